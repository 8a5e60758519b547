"""The caller's identity as a dependency: every /v1 route is scoped to the key's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth.service import Principal
from service.errors import Unauthorized

LOCAL_TENANT = "local"

bearer = HTTPBearer(auto_error=False, description="An API key from `ridgeline keys create`.")


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    app_state = request.app.state
    if app_state.settings.auth == "disabled":
        return Principal(key_name="local", tenant_id=LOCAL_TENANT)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>'; create one with "
            "`ridgeline keys create --name NAME`"
        )
    with app_state.db.read_sessions() as session:
        principal = app_state.key_verifier.verify(session, credentials.credentials)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked; check it or create a new one")
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
