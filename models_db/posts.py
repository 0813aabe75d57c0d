"""Posting: a user's own images become one public post. Generated outputs are private (Image.private) until
then; posting links the resources their generation used (checkpoint, LoRAs, embeddings, VAE, ControlNet)."""
from __future__ import annotations

import json

from models_db import generation as gen
from models_db.catalog import ModelVersion, may_manage
from models_db.db import id_set
from models_db.images import Image, ImageResource, Post, refresh_version_levels

MAX_POST_IMAGES = 100  # per request (a run's automatic post takes all its outputs)
UNPOSTABLE = ("Rejected", "Removed")


class PostRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def post_images(user, image_ids: list[int], title: str = "", version: ModelVersion | None = None) -> Post:
    """Call inside a transaction. The user's own images (not in a post yet) become one public post, or
    PostRefused is raised and the caller's transaction rolls back: nothing is half-posted. With a version, the
    images are shown with it (its showcase when the user manages it, else community images)."""
    ids = list(dict.fromkeys(image_ids))
    rows = {i.id: i for i in Image.select(Image.id, Image.status, Image.post, Image.private)
            .where(Image.id.in_(id_set(ids)), Image.user == user.id)}
    missing = [i for i in ids if i not in rows or rows[i].status in UNPOSTABLE]
    if missing:  # someone else's image answers as a missing one does
        raise PostRefused(404, f"No image with id {missing[0]}")
    taken = [i for i in ids if rows[i].post_id is not None]
    if taken:
        raise PostRefused(409, f"image {taken[0]} is already in post {rows[taken[0]].post_id}")
    post = Post.create(user=user.id, model_version=version, title=title or "")
    changes = {Image.post: post.id, Image.private: False}
    if version is not None:
        changes.update({Image.model_version: version.id, Image.showcase: may_manage(version, user)})
    updated = Image.update(changes).where(Image.id.in_(id_set(ids)), Image.user == user.id,
                                          Image.post.is_null(), Image.status.not_in(UNPOSTABLE)).execute()
    if updated != len(ids):  # posted or removed meanwhile by another request
        raise PostRefused(409, "some of these images changed meanwhile; try again")
    link_generation_resources(ids)
    refresh_version_levels({v for (v,) in Image.select(Image.model_version).where(
        Image.id.in_(id_set(ids))).tuples()})  # re-indexes the models it changes once this commits
    return post


def link_generation_resources(image_ids: list[int]) -> None:
    """The catalog versions each generated image was made with, exactly as its job named them."""
    jobs = list(gen.GenerationJob.select(gen.GenerationJob.image, gen.GenerationParams.params_json)
                .join(gen.GenerationParams, on=((gen.GenerationParams.run == gen.GenerationJob.run)
                                                & (gen.GenerationParams.signature == gen.GenerationJob.signature)))
                .where(gen.GenerationJob.image.in_(id_set(image_ids))).tuples())
    rows = []
    for image_id, params_json in jobs:
        for kind, described in used_resources(params_json):
            rows.append({"image": image_id, "version": described["version_id"], "kind": kind,
                         "name": str(described.get("name", ""))[:255]})
    if rows:
        known = {v for (v,) in ModelVersion.select(ModelVersion.id).where(
            ModelVersion.id.in_(id_set(r["version"] for r in rows))).tuples()}
        ImageResource.insert_many([r for r in rows if r["version"] in known]).on_conflict_ignore().execute()


def used_resources(params_json: str) -> list[tuple[str, dict]]:
    """(kind, described version) of each catalog resource in a job's stored parameters."""
    params = json.loads(params_json)
    found = [("checkpoint", params["model"])]
    found += [("lora", r) for r in params.get("loras") or []]
    found += [("embedding", r) for r in params.get("embeddings") or []]
    found += [(kind, params[kind]) for kind in ("vae", "controlnet") if params.get(kind)]
    return [(kind, d) for kind, d in found if d and d.get("version_id")]


def post_run_outputs(run_id: int) -> int:
    """Call inside a transaction: the run's unposted outputs become one post of its owner (their default
    is public). Idempotent: posted ones are skipped. Returns how many it posted."""
    run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == run_id)
    if run is None or run.deleted_at is not None or not run.user.post_outputs:
        return 0
    ids = [i for (i,) in Image.select(Image.id).where(Image.id.in_(gen.private_outputs(run_id)),
                                                      Image.status.not_in(UNPOSTABLE)).order_by(Image.id).tuples()]
    if not ids:
        return 0
    post_images(run.user, ids, title=f"Generation run {run_id}")
    return len(ids)
