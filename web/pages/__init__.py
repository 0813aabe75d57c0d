"""The server-rendered site: one blueprint per feature, all on the same models_db functions as the API."""
from __future__ import annotations

from urllib.parse import urlsplit

import nh3
from flask import Flask, flash, request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from models_db.images import LEVELS, browsing_mask

ALL_LEVELS = 31  # PG..XXX: thumbnails above the viewer's level are shown blurred, not hidden
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}


def viewer():
    from flask_login import current_user
    return current_user if current_user.is_authenticated else None


def viewer_mask() -> int:
    return browsing_mask(viewer())


def blurred(level: int) -> bool:
    return bool(level & ~viewer_mask() & ALL_LEVELS)


def safe_next(target: str | None, default: str = "/") -> str:
    """Only same-site paths: a `next` parameter must not send the user off the site."""
    if not target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and target.startswith("/") else default


def api_call(fn, *args, **kwargs):
    """Runs an API-layer validator or action; its 4xx JSON error becomes a flash message (None returned)."""
    try:
        return fn(*args, **kwargs)
    except HTTPException as exc:
        if exc.response is None or exc.response.status_code >= 500:
            raise
        flash((exc.response.get_json(silent=True) or {}).get("error", "That did not work"), "error")
        return None


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def compact(n: float) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:g}"


def page_href(**changes) -> str:
    """This page's URL with some query parameters changed (None removes one)."""
    from urllib.parse import urlencode
    args = request.args.to_dict(flat=False)
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = [str(value)]
    query = urlencode(args, doseq=True)
    return request.path + ("?" + query if query else "")


def init_app(app: Flask) -> None:
    from web.pages import accounts, catalog, creators, generation, staff
    for module in (accounts, catalog, creators, generation, staff):
        app.register_blueprint(module.bp)
    app.jinja_env.filters.update(
        sanitize=lambda html: Markup(nh3.clean(html or "")), human_size=human_size, compact=compact)
    app.jinja_env.globals.update(blurred=blurred, page_href=page_href, LEVEL_NAMES=LEVEL_NAMES)
