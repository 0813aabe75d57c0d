"""Creator pages: create a model and its first version, add versions, upload files (chunked, with progress),
watch ingest and scan, publish. Owners (and staff) only; validation is the API's own."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import login_required

from models_db import catalog as c
from models_db.db import transaction
from models_db.images import Image
from models_db.uploads import Upload
from web import creators as api
from web.api import validated
from web.bodies import NewModel, VersionFields
from web.pages import api_call

bp = Blueprint("site_creators", __name__)
LICENCE = (("allowNoCredit", "Use without crediting me"), ("allowDerivatives", "Share merges of this model"),
           ("allowDifferentLicense", "Use different permissions on merges"))
USES = (("Image", "Sell generated images"), ("Rent", "Run on generation services"), ("Sell", "Sell this model"))


def words(name: str) -> list[str]:
    return [w.strip() for w in request.form.get(name, "").split(",") if w.strip()]


def model_fields() -> dict | None:
    """The form's model, validated as the API validates a body (None, with the reason flashed, if it isn't)."""
    form = request.form
    return api_call(lambda: api.model_fields(validated(NewModel, {
        "name": form.get("name", ""), "type": form.get("type", ""), "description": form.get("description", ""),
        "nsfw": "nsfw" in form, "tags": words("tags"), "allowCommercialUse": form.getlist("allowCommercialUse"),
        **{key: key in form for key, _ in LICENCE}})))


def version_fields() -> dict | None:
    form = request.form
    return api_call(lambda: api.version_fields(validated(VersionFields, {
        "name": form.get("versionName", ""), "baseModel": form.get("baseModel", ""),
        "description": form.get("versionDescription", ""), "trainedWords": words("trainedWords")})))


def owned(model_id: int) -> c.Model:
    return api_call(api.owned_model, model_id) or abort(404)


def choices() -> dict:
    return {"types": c.MODEL_TYPES, "base_models": c.BASE_MODELS, "licence": LICENCE, "uses": USES}


@bp.route("/models/new", methods=["GET", "POST"])
@login_required
def new_model():
    if request.method == "POST":
        fields = model_fields()
        version = fields and version_fields()
        if fields and version:
            with transaction():
                model = c.create_model(api.current_api_user(), **fields)
                c.create_version(model, **version)
            return redirect(url_for(".manage", model_id=model.id))
    return render_template("creators/new_model.html", form=request.form, **choices()), \
        400 if request.method == "POST" else 200


@bp.get("/models/<id:model_id>/manage")
@login_required
def manage(model_id: int):
    model = owned(model_id)
    versions = list(model.versions.order_by(c.ModelVersion.index))
    files = {v.id: list(v.files.order_by(c.ModelFile.id)) for v in versions}
    uploads = {v.id: list(v.uploads.where(Upload.state != "done").order_by(Upload.created_at)) for v in versions}
    images = {v.id: list(v.images.where(Image.showcase == True, Image.status.in_(("Pending", "Ready")))  # noqa: E712
                         .order_by(Image.id)) for v in versions}
    return render_template("creators/manage.html", model=model, versions=versions, files=files, uploads=uploads,
                           images=images, file_types=c.FILE_TYPES, **choices())


@bp.post("/models/<id:model_id>/versions")
@login_required
def add_version(model_id: int):
    model = owned(model_id)
    fields = version_fields()
    if fields:
        with transaction():
            c.create_version(model, **fields)
    return redirect(url_for(".manage", model_id=model.id))


@bp.post("/model-versions/<id:version_id>/publish")
@login_required
def publish(version_id: int):
    version = api_call(api.owned_version, version_id) or abort(404)
    with transaction():
        api_call(api.publish_version, version)
    return redirect(url_for(".manage", model_id=version.model_id))
