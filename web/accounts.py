"""Accounts: browser sessions (flask-login) and GET /api/v1/me."""
from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import LoginManager

from models_db.accounts import user_for_session
from web.api import current_api_user, require_user
from web.openapi import BOOL, INT, STR, doc, obj

bp = Blueprint("accounts", __name__)
login_manager = LoginManager()


@login_manager.user_loader
def load_user(login_token: str):
    """The session and remember-me cookies hold the token of a LoginSession (see User.get_id)."""
    return user_for_session(login_token)


ME = obj(("id", "username"), id=INT, username=STR, tier=STR, status=STR, role=STR, email={"type": ["string", "null"]},
         image={"type": ["string", "null"]}, postOutputs=BOOL)


@bp.get("/api/v1/me")
@require_user("read")
@doc("The user of the API key", "accounts", response=ME)
def me():
    return jsonify(me_json(current_api_user()))


def me_json(user) -> dict:
    return dict(id=user.id, username=user.username, tier="free", status="active", role=user.role,
                email=user.email, image=user.image, postOutputs=user.post_outputs)
