"""Helpers shared by the JSON API blueprints: errors, parameters, absolute URLs, auth."""
from __future__ import annotations

import logging
from functools import wraps
from urllib.parse import quote, urlencode

from flask import abort, g, jsonify, make_response, request, url_for
from werkzeug.routing import IntegerConverter

import settings
from models_db.accounts import user_for_key
from models_db.db import utcnow
from models_db.ids import INT64_MAX, parse_id, parse_int

TRUE, FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
FORM_OVERHEAD = 1 << 20  # a multipart body's fields and boundaries beside its file
MAX_PAGE = 1_000_000_000  # page × limit stays a valid OFFSET


class IdConverter(IntegerConverter):
    """`<id:name>`: a row id, 1..2**63-1 in ASCII digits; anything else is a 404 like an unknown id."""
    regex = r"[0-9]{1,19}"

    def __init__(self, map, min: int = 1):
        super().__init__(map, min=min, max=INT64_MAX)


class IndexConverter(IdConverter):
    """`<index:name>`: 0..2**63-1 (positions, sizes)."""

    def __init__(self, map):
        super().__init__(map, min=0)


CONVERTERS = {"id": IdConverter, "index": IndexConverter}


def error(status: int, reason: str, **extra):
    """Stops the request with a JSON body {"error": reason, ...extra}."""
    response = make_response(jsonify(error=reason, **extra), status)
    abort(response)


def retry_later(reason: str, seconds: int, **extra):
    """Stops the request with 429, a Retry-After header and {"error": reason, "retryAfter": seconds, ...}."""
    response = make_response(jsonify(error=reason, retryAfter=seconds, **extra), 429)
    response.headers["Retry-After"] = str(seconds)
    abort(response)


def parsed(model):
    """The request's JSON body validated by a pydantic model (web.bodies); 400 naming the first bad field."""
    return validated(model, request.get_json(silent=True))


def validated(model, data):
    from pydantic import ValidationError
    if not isinstance(data, list if "root" in model.model_fields else dict):
        error(400, "send a JSON array" if "root" in model.model_fields else "send a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "body"
        error(400, validation_message(name, first), field=name)


def validation_message(name: str, problem: dict) -> str:
    kind = problem["type"]
    if kind == "missing":
        return f"{name} is required"
    if kind == "literal_error":
        return f"{name} must be one of: {problem['ctx']['expected']}"
    if kind == "bool_type":
        return f"{name} must be true or false"
    if kind == "list_type":
        return f"{name} must be a list"
    return f"{name}: {problem['msg'].removeprefix('Value error, ')}"


def multi(name: str) -> list[str]:
    """A list parameter sent as repeated keys, as one comma-separated value, or both."""
    out = []
    for value in request.args.getlist(name) + request.args.getlist(name + "[]"):
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def boolean(name: str) -> bool | None:
    value = request.args.get(name, "").strip().lower()
    if not value:
        return None
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    error(400, f"{name} must be true or false")


def integer(name: str, default: int | None, lo: int, hi: int = INT64_MAX, value: str | None = None) -> int | None:
    """The query parameter `name` (or the given text) as an integer in lo..hi; 400 otherwise."""
    value = (request.args.get(name, "") if value is None else value).strip()
    if not value:
        return default
    number = parse_int(value, lo, hi)
    if number is None:
        error(400, f"{name} must be an integer from {lo} to {hi}")
    return number


def page_number(value: str | None = None) -> int | None:
    return integer("page", None, 1, MAX_PAGE, value)


def ids(name: str) -> list[int]:
    """A list of ids (repeated or comma-separated)."""
    out = [parse_id(v) for v in multi(name)]
    if None in out:
        error(400, f"{name} must be ids (integers from 1 to {INT64_MAX})")
    return out


def refuse_nul() -> None:
    """Before every request: NUL is never valid text in a path, query or form field (PostgreSQL cannot store
    it), so it is a 400 here rather than a database error later. The API's multipart bodies (large files)
    are read by their views, after authentication; a page's form is small either way."""
    fields = [request.path, *request.args.keys(), *(v for vs in request.args.listvalues() for v in vs)]
    page = not request.path.startswith(("/api/", "/sdapi/"))
    if request.mimetype == "application/x-www-form-urlencoded" or (page and request.mimetype == "multipart/form-data"):
        fields += [*request.form.keys(), *(v for vs in request.form.listvalues() for v in vs)]
    if any("\x00" in field for field in fields):
        error(400, "NUL characters are not allowed")


def has_nul(data) -> bool:
    """True if a parsed JSON value holds a NUL character in any string."""
    if isinstance(data, str):
        return "\x00" in data
    if isinstance(data, dict):
        return any(has_nul(k) or has_nul(v) for k, v in data.items())
    return isinstance(data, list) and any(has_nul(v) for v in data)


def base_url() -> str:
    """PUBLIC_URL, or the scheme and host this request came to."""
    if "base_url" not in g:
        g.base_url = settings.get().public_url or request.host_url.rstrip("/")
    return g.base_url


def download_url(version_id: int, **query) -> str:
    """An absolute download link, formatted directly (a listing builds hundreds of them)."""
    url = f"{base_url()}/api/download/models/{version_id}"
    return url + "?" + urlencode(query, quote_via=quote) if query else url


def absolute(endpoint: str, **values) -> str:
    base = settings.get().public_url
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


def page_url(**changes) -> str:
    args = request.args.to_dict(flat=False)
    args.update({k: [str(v)] for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        args.pop(k, None)
    return absolute(request.endpoint, **(request.view_args or {}), **args)


def api_key_from_request() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.args.get("token") or None


def current_api_user():
    """The user of the request's API key (Bearer header or ?token=), or of the browser session."""
    if "api_user" not in g:
        g.api_user, g.api_key = None, None
        key = api_key_from_request()
        if key:
            from web.security import auth_attempt, auth_failed
            auth_attempt()
            found = user_for_key(key)
            if found is None:
                auth_failed()
                error(401, "Invalid API key")
            g.api_user, g.api_key = found
            if not g.api_key.last_used_at or (utcnow() - g.api_key.last_used_at).total_seconds() > 60:
                type(g.api_key).update(last_used_at=utcnow()).where(
                    type(g.api_key).id == g.api_key.id).execute()
        else:
            from flask_login import current_user
            if current_user and current_user.is_authenticated:
                g.api_user = current_user._get_current_object()
    return g.api_user


def body_limit(limit):
    """A view's own request-body limit, a function of the settings (every other view has MAX_REQUEST_BYTES)."""
    def decorator(view):
        view.body_limit = limit
        return view
    return decorator


def require_user(scope: str = "read"):
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = current_api_user()
            if user is None:
                error(401, "Unauthorized", message="An API key is required: send 'Authorization: Bearer <key>'"
                      " or ?token=<key>.")
            if g.api_key is not None and not g.api_key.allows(scope):
                error(403, f"This API key lacks the '{scope}' scope")
            return view(*args, **kwargs)
        wrapped.api_scope = scope
        return wrapped
    return decorator


def send_blob(blob: str, mime: str, name: str):
    """A stored file: a signed redirect where the store has them (S3), else the bytes, cacheable forever."""
    from flask import redirect

    from models_db.storage import get_store
    url = get_store().signed_url(blob, name, settings.get().download_link_ttl)
    if url:
        return redirect(url, code=302)
    return serve_file(blob, mime, 86400)


def log_missing_blob(blob: str, where: str) -> None:
    logging.getLogger("atelier.web").warning("blob %s is missing from storage (%s)", blob, where)


def serve_file(blob: str, mime: str, max_age: int):
    """A blob's bytes by send_file, with one byte range at most: a multi-range request gets the whole file
    (200), which RFC 9110 allows (a server may ignore Range) and every client handles. A blob gone from the
    store is a 404 (JSON or the error page), logged as a warning."""
    from flask import send_file

    from models_db.storage import BlobMissing, get_store
    try:
        source = get_store().readable(blob)
    except BlobMissing:
        log_missing_blob(blob, request.path)
        abort(404, "The stored file is missing")
    if "," in request.headers.get("Range", ""):
        request.environ.pop("HTTP_RANGE", None)
    return send_file(source, mimetype=mime, conditional=True, etag=blob, max_age=max_age)
