"""Creator endpoints (API key with the write scope, owner only): create models and versions, publish."""
from __future__ import annotations

import nh3
from flask import Blueprint, jsonify

from models_db import catalog as c
from models_db.db import transaction
from web.api import current_api_user, error, parsed, require_user
from web.bodies import NewModel, NewVersion, VersionFields
from web.catalog import models_json, versions_json
from web.openapi import doc, ref

bp = Blueprint("creators", __name__)


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


def model_fields(data: NewModel) -> dict:
    uses = [data.allowCommercialUse] if isinstance(data.allowCommercialUse, str) else data.allowCommercialUse
    return {"name": data.name, "type": data.type, "description": nh3.clean(data.description), "nsfw": data.nsfw,
            "poi": data.poi, "allow_no_credit": data.allowNoCredit, "allow_derivatives": data.allowDerivatives,
            "allow_different_license": data.allowDifferentLicense,
            "allow_commercial_use": ",".join(u for u in uses if u != "None"), "tags": data.tags}


def version_fields(data: VersionFields) -> dict:
    return {"name": data.name, "base_model": data.baseModel, "description": nh3.clean(data.description),
            "trained_words": data.trainedWords, "login_required": data.loginRequired}


def publish_version(version: c.ModelVersion) -> None:
    try:
        c.publish_version(version)
    except c.NotPublishable as exc:
        error(409, str(exc))


@bp.post("/api/v1/models")
@require_user("write")
@doc("Create a model (Draft)", "creators", status=201, response=ref("Model"), body=NewModel)
def post_model():
    fields = model_fields(parsed(NewModel))
    with transaction():
        model = c.create_model(current_api_user(), **fields)
    return jsonify(models_json([_row(model.id)], require_versions=False)[0]), 201


@bp.post("/api/v1/model-versions")
@require_user("write")
@doc("Create a version of one of your models", "creators", status=201, response=ref("ModelVersion"),
     body=NewVersion, errors={404: "no such model of yours"})
def post_version():
    data = parsed(NewVersion)
    model = owned_model(data.modelId)
    fields = version_fields(data)
    with transaction():
        version = c.create_version(model, **fields)
    return jsonify(versions_json([version.id])[0]), 201


@bp.post("/api/v1/model-versions/<id:version_id>/publish")
@require_user("write")
@doc("Publish a version", "creators", response=ref("ModelVersion"), errors={409: "no accepted file"})
def post_publish_version(version_id: int):
    version = owned_version(version_id)
    with transaction():
        publish_version(version)
    return jsonify(versions_json([version.id])[0])


@bp.post("/api/v1/models/<id:model_id>/publish")
@require_user("write")
@doc("Publish every version that has an accepted file", "creators", response=ref("Model"),
     errors={409: "nothing to publish"})
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
