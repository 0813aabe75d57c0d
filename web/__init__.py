"""The web entrance: create_app() wires one blueprint per feature."""
from __future__ import annotations

import logging

import orjson
from flask import Flask, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, RequestEntityTooLarge

import settings
from models_db.cursors import BadCursor


def create_app(env: dict | None = None) -> Flask:
    s = settings.reload(env) if env is not None else settings.get()
    logging.basicConfig(level=s.log_level)
    from models_db import db as database
    database.init()
    import jobs  # noqa: F401  (broker first, then the actors the views enqueue)

    app = Flask(__name__)
    app.config.update(SECRET_KEY=s.secret_key)
    app.json = OrjsonProvider(app)
    from web.api import CONVERTERS
    app.url_map.converters.update(CONVERTERS)  # before the blueprints: their rules compile with them

    @app.before_request
    def _body_limit():  # first: before anything reads a body
        limit = getattr(app.view_functions.get(request.endpoint), "body_limit", None)
        current = settings.get()
        request.max_content_length = limit(current) if limit else current.max_request_bytes
        if (request.content_length or 0) > request.max_content_length:
            raise RequestEntityTooLarge(f"request bodies here are limited to {request.max_content_length} bytes")

    from web import (
        accounts,
        catalog,
        creators,
        downloads,
        generation,
        health,
        images,
        leaderboards,
        metrics,
        moderation,
        notifications,
        openapi,
        operations,
        reviews,
        sdapi,
        search,
        uploads,
    )
    for module in (accounts, catalog, creators, downloads, generation, health, images, leaderboards, metrics,
                   moderation, notifications, openapi, operations, reviews, sdapi, search, uploads):
        app.register_blueprint(module.bp)
    metrics.init_app(app)
    accounts.login_manager.init_app(app)
    accounts.login_manager.login_view = "site_accounts.login"

    @app.before_request
    def _connect():
        database.db.connect(reuse_if_open=True)

    from web.api import refuse_nul
    app.before_request(refuse_nul)

    from web import pages, security
    security.init_app(app)  # after _connect: its rate-limit key may look up an API key
    pages.init_app(app)

    @app.teardown_request
    def _close(exc):
        if not database.db.is_closed():
            database.db.close()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        if not wants_json():
            return error_page(exc)
        message = "Not found" if exc.description == NotFound.description else exc.description
        response = jsonify(error=message)
        response.status_code = exc.code
        for header in ("Retry-After", "Allow", "WWW-Authenticate", "Content-Range"):
            if header in exc.get_response().headers:
                response.headers[header] = exc.get_response().headers[header]
        return response

    @app.errorhandler(BadCursor)
    def _bad_cursor(exc: BadCursor):
        return _http_error(BadRequest(str(exc)))

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        app.logger.exception("unhandled error on %s", request.path)
        response = jsonify(error="Internal server error")
        response.status_code = 500
        return response

    return app


def error_page(exc: HTTPException):
    from flask import render_template
    response = exc.get_response()
    if exc.code and exc.code >= 400 and response.status_code == exc.code:
        response.set_data(render_template("error.html", code=exc.code, name=exc.name,
                                          description=exc.description))
        response.content_type = "text/html; charset=utf-8"
    return response


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON through orjson: a 100-model listing is ~400 KB of JSON."""

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj, default=self.default, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s, **kwargs):
        data = orjson.loads(s)
        if (b"\\u0000" if isinstance(s, bytes) else "\\u0000") in s:
            from web.api import has_nul
            if has_nul(data):
                raise BadRequest("NUL characters are not allowed in JSON strings")
        return data


def wants_json() -> bool:
    return (request.path.startswith(("/api/", "/healthz", "/sdapi/"))
            or request.accept_mimetypes.best == "application/json")
