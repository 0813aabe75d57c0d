"""Creator endpoints (API key with the write scope, owner only): create models and versions, publish."""
from __future__ import annotations

import nh3
from flask import Blueprint, jsonify, request

from models_db import catalog as c
from models_db import names
from models_db.db import transaction
from web.api import current_api_user, error, require_user
from web.catalog import models_json, versions_json

bp = Blueprint("creators", __name__)


def body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        error(400, "send a JSON object")
    return data


def text(data: dict, name: str, *, required=False, max_len=255) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            error(400, f"{name} is required")
        return None
    if not isinstance(value, str) or len(value) > max_len:
        error(400, f"{name} must be a string of at most {max_len} characters")
    return value.strip()


def display_name(data: dict, name: str) -> str:
    """A required name shown to others (model, version): no bidirectional controls."""
    try:
        return names.refuse_bidi_controls(text(data, name, required=True), name)
    except ValueError as exc:
        error(400, str(exc))


def choice(data: dict, name: str, options, default=None):
    value = data.get(name, default)
    if value not in options:
        error(400, f"{name} must be one of: {', '.join(options)}")
    return value


def flag(data: dict, name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        error(400, f"{name} must be true or false")
    return value


def owned_model(model_id: int) -> c.Model:
    model = c.Model.get_or_none(c.Model.id == model_id)
    user = current_api_user()
    if model is None or model.status == "Deleted" or (model.owner_id != user.id and not user.is_staff):
        error(404, f"No model with id {model_id}")
    return model


def owned_version(version_id: int) -> c.ModelVersion:
    version = c.ModelVersion.get_or_none(c.ModelVersion.id == version_id)
    if version is None:
        error(404, f"No model version with id {version_id}")
    owned_model(version.model_id)
    return version


def model_fields(data: dict) -> dict:
    uses = data.get("allowCommercialUse", ["Image", "Rent", "Sell"])
    if isinstance(uses, str):
        uses = [uses]
    if not isinstance(uses, list) or any(u not in c.COMMERCIAL_USES for u in uses):
        error(400, "allowCommercialUse must be a list of: None, Image, Rent, Sell")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        error(400, "tags must be a list of strings")
    return {
        "name": display_name(data, "name"),
        "type": choice(data, "type", c.MODEL_TYPES),
        "description": nh3.clean(text(data, "description", max_len=100_000) or ""),
        "nsfw": flag(data, "nsfw", False), "poi": flag(data, "poi", False),
        "allow_no_credit": flag(data, "allowNoCredit", True),
        "allow_derivatives": flag(data, "allowDerivatives", True),
        "allow_different_license": flag(data, "allowDifferentLicense", True),
        "allow_commercial_use": ",".join(u for u in uses if u != "None"),
        "tags": tags,
    }


def version_fields(data: dict) -> dict:
    words = data.get("trainedWords", [])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        error(400, "trainedWords must be a list of strings")
    return {"name": display_name(data, "name"), "base_model": choice(data, "baseModel", c.BASE_MODELS),
            "description": nh3.clean(text(data, "description", max_len=100_000) or ""),
            "trained_words": words, "login_required": flag(data, "loginRequired", False)}


def publish_version(version: c.ModelVersion) -> None:
    try:
        c.publish_version(version)
    except c.NotPublishable as exc:
        error(409, str(exc))


@bp.post("/api/v1/models")
@require_user("write")
def post_model():
    data = body()
    fields = model_fields(data)
    with transaction():
        model = c.create_model(current_api_user(), **fields)
    return jsonify(models_json([_row(model.id)], require_versions=False)[0]), 201


@bp.post("/api/v1/model-versions")
@require_user("write")
def post_version():
    data = body()
    if not isinstance(data.get("modelId"), int):
        error(400, "modelId is required")
    model = owned_model(data["modelId"])
    fields = version_fields(data)
    with transaction():
        version = c.create_version(model, **fields)
    return jsonify(versions_json([version.id])[0]), 201


@bp.post("/api/v1/model-versions/<int:version_id>/publish")
@require_user("write")
def post_publish_version(version_id: int):
    version = owned_version(version_id)
    with transaction():
        publish_version(version)
    return jsonify(versions_json([version.id])[0])


@bp.post("/api/v1/models/<int:model_id>/publish")
@require_user("write")
def post_publish_model(model_id: int):
    model = owned_model(model_id)
    with transaction():
        ready = [v for v in model.versions if v.files.where(c.ModelFile.status == "Ready").exists()]
        if not ready:
            error(409, "no version of this model has an ingested, safe file yet")
        for version in ready:
            publish_version(version)
    return jsonify(models_json([_row(model.id)], require_versions=False)[0])


def _row(model_id: int) -> dict:
    from models_db.catalog_queries import model_rows
    return model_rows([model_id])[0]
