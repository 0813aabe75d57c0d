"""Accounts: browser sessions (flask-login) and GET /api/v1/me."""
from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import LoginManager

from models_db.accounts import User
from web.api import current_api_user, require_user

bp = Blueprint("accounts", __name__)
login_manager = LoginManager()


@login_manager.user_loader
def load_user(user_id: str):
    if not user_id.isdigit():
        return None
    return User.get_or_none(User.id == int(user_id), User.is_active == True)  # noqa: E712


@bp.get("/api/v1/me")
@require_user("read")
def me():
    user = current_api_user()
    return jsonify(id=user.id, username=user.username, tier="free", status="active", role=user.role,
                   email=user.email, image=user.image)
