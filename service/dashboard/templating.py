"""Jinja2 templates (autoescaped), the dashboard's static assets, and the filters pages use."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.responses import HTMLResponse

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Everything a page needs comes from this service: no CDN, no web font, no inline script.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str


def _load_assets() -> dict[str, Asset]:
    assets = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in MEDIA_TYPES and path.is_file():
            body = path.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            assets[path.name] = Asset(body, MEDIA_TYPES[path.suffix], version)
    return assets


ASSETS = _load_assets()


def asset_url(name: str) -> str:
    """The URL of a static asset, versioned by its content so it may be cached long."""
    return f"/assets/{name}?v={ASSETS[name].version}"


def fmt_num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def fmt_pct(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    return f"{value:.1%}"


def fmt_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = (end - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def percent(value: Any) -> int:
    try:
        return max(0, min(100, round(float(value) * 100)))
    except (TypeError, ValueError):
        return 0


def label(value: Any) -> str:
    """A JSON key as words: 'val_loss_turned_up_after_epoch' -> 'val loss turned up after epoch'."""
    return str(value).replace("_", " ")


# CommonMark with tables; raw HTML in the text is shown as text, never rendered.
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_html(text: str) -> Markup:
    """Markdown (a model card) as HTML that is safe to put in a page."""
    # Safe as markup: with html off, markdown-it escapes every tag the text holds.
    return Markup(_markdown.render(text))


env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(
    num=fmt_num,
    pct=fmt_pct,
    bytes=fmt_bytes,
    time=fmt_time,
    percent=percent,
    label=label,
)
env.globals.update(asset_url=asset_url, duration=fmt_duration)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = env.get_template(name).render(**context)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store"}
    return HTMLResponse(html, status_code=status_code, headers=headers)
