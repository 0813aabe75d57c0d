"""Browser-session security: CSRF on every form and cookie-authenticated write, secure cookies, rate limits
kept in Redis (Flask-Limiter)."""
from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, after_this_request, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import current_user
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadData, URLSafeTimedSerializer
from limits import parse_many
from werkzeug.exceptions import TooManyRequests

import settings

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
API_PREFIXES = ("/api/", "/sdapi/")
csrf = CSRFProtect()


def client_key() -> str:
    """Rate-limit key: the signed-in user (browser session or API key), else the client's address."""
    from web.api import current_api_user
    user = current_api_user() if request.path.startswith(API_PREFIXES) else None
    if user is None and current_user and current_user.is_authenticated:
        user = current_user
    return f"user:{user.id}" if user is not None else f"addr:{get_remote_address()}"


limiter = Limiter(
    client_key,
    application_limits=[lambda: settings.get().rate_limit_writes],
    application_limits_exempt_when=lambda: request.method in SAFE_METHODS,
    strategy="moving-window",
    headers_enabled=True,
)


def login_limit():
    return limiter.limit(lambda: settings.get().rate_limit_login, methods=["POST"], key_func=get_remote_address)


def register_limit():
    return limiter.limit(lambda: settings.get().rate_limit_register, methods=["POST"], key_func=get_remote_address)


KNOWN_DEVICE = "known_device"  # cookie: the users who signed in from this browser, signed
KNOWN_DEVICE_DAYS = 365
KNOWN_DEVICE_USERS = 5


def _devices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="known-device")


def _known_device_users() -> list[int]:
    try:
        ids = _devices().loads(request.cookies.get(KNOWN_DEVICE, ""), max_age=KNOWN_DEVICE_DAYS * 86400)
    except BadData:
        return []
    return [i for i in ids if type(i) is int] if isinstance(ids, list) else []


def known_device(user) -> bool:
    """Whether this browser has signed in as `user` before (the cookie remember_device set)."""
    return user is not None and user.id in _known_device_users()


def remember_device(user) -> None:
    """After a successful log-in: this browser is one of `user`'s known devices from now on."""
    ids = [user.id, *(i for i in _known_device_users() if i != user.id)][:KNOWN_DEVICE_USERS]
    value = _devices().dumps(ids)

    @after_this_request
    def set_cookie(response):
        response.set_cookie(KNOWN_DEVICE, value, max_age=KNOWN_DEVICE_DAYS * 86400, httponly=True, samesite="Lax",
                            secure=current_app.config["SESSION_COOKIE_SECURE"])
        return response


def _failure_keys(username: str | None) -> list[str]:
    from models_db.accounts import normal_username
    keys = [f"addr:{get_remote_address()}"]
    return keys + [f"user:{normal_username(username).casefold()}"] if username else keys


def auth_attempt(username: str | None = None) -> None:
    """Call before checking a credential: 429 while this client address, or this username, has failed
    RATE_LIMIT_AUTH_FAILURES times (a right guess is refused as well while it rests). Leave the username
    out for a browser known_device() for it, so that others failing on purpose cannot lock its owner out."""
    keys = _failure_keys(username)
    for limit in parse_many(settings.get().rate_limit_auth_failures):
        for key in keys:
            if not limiter.limiter.test(limit, "auth-failures", key):
                reset = limiter.limiter.get_window_stats(limit, "auth-failures", key).reset_time
                raise TooManyRequests("Too many failed authentications; try again later",
                                      retry_after=max(1, int(reset - time.time()) + 1))


def auth_failed(username: str | None = None) -> None:
    """Count a failed authentication against the client address and the username it named."""
    keys = _failure_keys(username)
    for limit in parse_many(settings.get().rate_limit_auth_failures):
        for key in keys:
            limiter.limiter.hit(limit, "auth-failures", key)


def _limits_storage_uri() -> str:
    from models_db.redis_store import redis_url
    url = redis_url()
    return "redis+unix://" + url[len("unix://"):] if url.startswith("unix://") else url


def protect_writes() -> None:
    """Every page form needs its token; an API write needs it only when the browser's cookie is what
    authenticates it (an API key or basic auth in a header is not sent by a forged cross-site form)."""
    if request.method in SAFE_METHODS:
        return
    if request.path.startswith(API_PREFIXES):
        from web.api import api_key_from_request
        if api_key_from_request() or request.authorization or not current_user.is_authenticated:
            return
    csrf.protect()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def page_policy() -> str:
    """The pages' Content-Security-Policy: our own script and style sheet only (no inline code), images
    also from the blob store's signed redirects, and never inside another site's frame."""
    s = settings.get()
    store = (_origin(s.s3_endpoint_url) or "https://*.amazonaws.com") if s.storage_url.startswith("s3://") else ""
    also = "".join(f" {origin}" for origin in (_origin(s.public_url), store) if origin)
    return (f"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{also}; "
            f"connect-src 'self'{also}; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def security_headers(response):
    """Every response: no MIME sniffing, no framing, no full URLs in Referer. Anything but a page (JSON,
    images, downloads) may run nothing at all, should a browser open it."""
    html = response.mimetype == "text/html"
    response.headers.setdefault("Content-Security-Policy", page_policy() if html else
                                "default-src 'none'; frame-ancestors 'none'; sandbox")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response


def init_app(app: Flask) -> None:
    from models_db.redis_store import redis_key
    https = settings.get().public_url.startswith("https://")
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=https,
        REMEMBER_COOKIE_HTTPONLY=True, REMEMBER_COOKIE_SAMESITE="Lax", REMEMBER_COOKIE_SECURE=https,
        REMEMBER_COOKIE_DURATION=timedelta(days=settings.get().session_days),
        RATELIMIT_STORAGE_URI=_limits_storage_uri(),
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": redis_key("limits")},
    )
    csrf.init_app(app)
    limiter.init_app(app)
    app.before_request(protect_writes)
    app.after_request(security_headers)
