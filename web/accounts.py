"""Accounts: browser sessions (flask-login) and GET /api/v1/me."""
from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import LoginManager

from models_db.accounts import user_for_session
from web.api import current_api_user, require_user
from web.openapi import INT, STR, doc, obj

bp = Blueprint("accounts", __name__)
login_manager = LoginManager()


@login_manager.user_loader
def load_user(login_token: str):
    """The session and remember-me cookies hold the token of a LoginSession (see User.get_id)."""
    return user_for_session(login_token)


@bp.get("/api/v1/me")
@require_user("read")
@doc("The user of the API key", "accounts", response=obj(
    ("id", "username"), id=INT, username=STR, tier=STR, status=STR, role=STR, email={"type": ["string", "null"]},
    image={"type": ["string", "null"]}))
def me():
    user = current_api_user()
    return jsonify(id=user.id, username=user.username, tier="free", status="active", role=user.role,
                   email=user.email, image=user.image)
