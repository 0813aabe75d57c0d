"""GET /api/v1/notifications: what Atelier told the user (e.g. why a file was refused)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from models_db.notifications import Notification
from web.api import current_api_user, integer, require_user
from web.openapi import DATE, INT, LIMIT, STR, doc, items_of, obj

bp = Blueprint("notifications", __name__)


@bp.get("/api/v1/notifications")
@require_user("read")
@doc("Messages to the user of the API key, newest first", "accounts", params=[LIMIT(200)],
     response=items_of(obj(id=INT, kind=STR, message=STR, createdAt=DATE)))
def list_notifications():
    limit = integer("limit", 50, 1, 200)
    rows = (Notification.select().where(Notification.user == current_api_user())
            .order_by(Notification.id.desc()).limit(limit))
    return jsonify(items=[{"id": n.id, "kind": n.kind, "message": n.message,
                           "createdAt": n.created_at.isoformat(timespec="milliseconds") + "Z"} for n in rows])
