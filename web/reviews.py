"""Reviews of model versions (thumbs up or down, an optional 1-5 rating and text) and comments on models.
Each change is one raw event row; the model's stats are recomputed from the events by a job."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from jobs.stats import refresh_model_stats
from models_db import reviews as rv
from models_db.catalog import Model, ModelVersion
from models_db.db import on_commit, transaction
from web.api import current_api_user, error, integer, require_user, validated
from web.bodies import CommentIn, ReviewIn
from web.catalog import iso
from web.openapi import LIMIT, doc, items_of, ref

bp = Blueprint("reviews", __name__)


def public_version(version_id: int) -> ModelVersion:
    version = (ModelVersion.select().join(Model)
               .where(ModelVersion.id == version_id, ModelVersion.status == "Published",
                      Model.status == "Published").first())
    if version is None:
        error(404, f"No model version with id {version_id}")
    return version


def public_model(model_id: int) -> Model:
    model = Model.get_or_none(Model.id == model_id, Model.status == "Published")
    if model is None:
        error(404, f"No model with id {model_id}")
    return model


def refresh_after_commit(model_id: int) -> None:
    on_commit(lambda: refresh_model_stats.send(model_id))


def review_json(r: dict) -> dict:
    return {"id": r["id"], "modelId": r["model"], "modelVersionId": r["version"], "username": r["username"],
            "recommended": r["recommended"], "rating": r["rating"], "details": r["details"],
            "createdAt": iso(r["created_at"]), "updatedAt": iso(r["updated_at"])}


def comment_json(c: dict) -> dict:
    return {"id": c["id"], "modelId": c["model"], "username": c["username"], "content": c["body"],
            "createdAt": iso(c["created_at"])}


def save_review(version_id: int, data: dict) -> rv.Review:
    version = public_version(version_id)
    data = validated(ReviewIn, data)
    with transaction():
        review = rv.review(current_api_user().id, version, data.recommended, data.rating, data.details)
        refresh_after_commit(version.model_id)
    return review


def remove_review(version_id: int) -> bool:
    version = public_version(version_id)
    with transaction():
        removed = rv.delete_review(current_api_user().id, version.id)
        if removed:
            refresh_after_commit(version.model_id)
    return removed


def add_comment(model_id: int, data: dict) -> rv.Comment:
    model = public_model(model_id)
    data = validated(CommentIn, data)
    with transaction():
        comment = rv.comment(current_api_user().id, model.id, data.content)
        refresh_after_commit(model.id)
    return comment


@bp.put("/api/v1/model-versions/<id:version_id>/review")
@require_user("write")
@doc("Review a published version: thumbs up or down, an optional 1-5 rating and text; one per user and version, "
     "replaced on the next call", "reviews", response=ref("Review"), body=ReviewIn)
def put_review(version_id: int):
    review = save_review(version_id, request.get_json(silent=True))
    return jsonify(review_json({**review.__data__, "username": current_api_user().username}))


@bp.delete("/api/v1/model-versions/<id:version_id>/review")
@require_user("write")
@doc("Withdraw your review", "reviews", status=204)
def delete_review(version_id: int):
    if not remove_review(version_id):
        error(404, "You have not reviewed this version")
    return "", 204


@bp.get("/api/v1/models/<id:model_id>/reviews")
@doc("The model's newest reviews", "reviews", response=items_of(ref("Review")), params=[LIMIT(100)])
def list_reviews(model_id: int):
    reviews = rv.recent_reviews(public_model(model_id).id, integer("limit", 20, 1, 100))
    return jsonify(items=[review_json(r) for r in reviews])


@bp.get("/api/v1/models/<id:model_id>/comments")
@doc("The model's newest comments", "reviews", response=items_of(ref("Comment")), params=[LIMIT(100)])
def list_comments(model_id: int):
    comments = rv.recent_comments(public_model(model_id).id, integer("limit", 20, 1, 100))
    return jsonify(items=[comment_json(c) for c in comments])


@bp.post("/api/v1/models/<id:model_id>/comments")
@require_user("write")
@doc("Comment on a published model", "reviews", status=201, response=ref("Comment"), body=CommentIn)
def post_comment(model_id: int):
    comment = add_comment(model_id, request.get_json(silent=True))
    return jsonify(comment_json({**comment.__data__, "username": current_api_user().username})), 201


@bp.delete("/api/v1/comments/<id:comment_id>")
@require_user("write")
@doc("Remove your comment (staff: any comment)", "reviews", status=204)
def delete_comment(comment_id: int):
    row = rv.Comment.get_or_none(rv.Comment.id == comment_id, rv.Comment.hidden == False)  # noqa: E712
    user = current_api_user()
    if row is None or (row.user_id != user.id and not user.is_staff):
        error(404, f"No comment with id {comment_id}")
    with transaction():
        rv.hide_comment(comment_id)
        refresh_after_commit(row.model_id)
    return "", 204
