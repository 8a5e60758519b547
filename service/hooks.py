"""Hooks a higher domain registers so a lower one can ask it something without importing it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

InUseCheck = Callable[[Session, uuid.UUID], str | None]


class InUseChecks:
    """Why a row is still needed, asked of every domain that registered a check.

    create_app registers them (jobs answer for datasets, registered models for jobs), so the
    lower domain imports none of the higher ones and no circle of imports forms.
    """

    def __init__(self) -> None:
        self._checks: dict[str, InUseCheck] = {}

    def register(self, name: str, check: InUseCheck) -> None:
        """Make deletion ask `check`, which returns why the row is still needed or None."""
        self._checks[name] = check

    def reason(self, session: Session, row_id: uuid.UUID) -> str | None:
        """The first reason any registered check gives, or None when the row may go."""
        for check in self._checks.values():
            reason = check(session, row_id)
            if reason is not None:
                return reason
        return None
