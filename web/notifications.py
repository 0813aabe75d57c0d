"""GET /api/v1/notifications: what Atelier told the user (e.g. why a file was refused)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from models_db.notifications import Notification
from web.api import current_api_user, integer, require_user

bp = Blueprint("notifications", __name__)


@bp.get("/api/v1/notifications")
@require_user("read")
def list_notifications():
    limit = integer("limit", 50, 1, 200)
    rows = (Notification.select().where(Notification.user == current_api_user())
            .order_by(Notification.id.desc()).limit(limit))
    return jsonify(items=[{"id": n.id, "kind": n.kind, "message": n.message,
                           "createdAt": n.created_at.isoformat(timespec="milliseconds") + "Z"} for n in rows])
