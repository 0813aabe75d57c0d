"""GET /healthz: the state of the database, Redis and storage; 503 when one is down."""
from __future__ import annotations

from flask import Blueprint, jsonify

from web.openapi import doc, ref

bp = Blueprint("health", __name__)


def _check(probe) -> dict:
    try:
        return {"ok": True, "detail": probe()}
    except Exception as exc:  # any failure of a dependency is reported, not raised
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}


def _database() -> str:
    from models_db.db import db
    from models_db.migrations import pending
    db.execute_sql("SELECT 1")
    waiting = pending()
    if waiting:
        raise RuntimeError(f"migrations not applied: {', '.join(waiting)} (run `atelier db upgrade`)")
    return type(db.obj).__name__.replace("Database", "")


def _redis() -> str:
    from models_db.redis_store import client
    info = client().info("server")
    return f"redis {info['redis_version']}"


def _storage() -> str:
    from models_db.storage import get_store
    return get_store().check()


@bp.get("/healthz")
@doc("Health of database, Redis and storage", "meta", response=ref("Health"),
     errors={503: {"description": "something is down", "content": {"application/json": {"schema": ref("Health")}}}})
def healthz():
    checks = {"database": _check(_database), "redis": _check(_redis), "storage": _check(_storage)}
    ok = all(c["ok"] for c in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
