"""Catalog pages: the models grid (filters, sorts, search, cursor paging), model, image and creator pages."""
from __future__ import annotations

import json
import re

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

from models_db import catalog as c
from models_db import catalog_queries as q
from models_db.accounts import User
from models_db.ids import parse_id, parse_int
from models_db.images import Image, ImageResource, may_see, showcase, shown_to
from models_db.reviews import recent_comments, recent_reviews
from web import reviews as review_api
from web.api import multi
from web.pages import ALL_LEVELS, api_call, viewer

bp = Blueprint("site_catalog", __name__)
PAGE_SIZE = 24
PERIODS = ("AllTime", "Year", "Month", "Week", "Day")
GRID_TYPES = ("Checkpoint", "LORA", "TextualInversion", "Controlnet", "VAE", "Upscaler", "Other")


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "model"


def thumb(row: dict, width: int = 450) -> dict:
    from web.images import image_url
    return {"id": row["id"], "url": image_url(row, width), "level": row["nsfw_level"]}


def cards(rows: list[dict]) -> list[dict]:
    """Grid cards: a model row with its newest version's base model and its first showcase image."""
    ids = [m["id"] for m in rows]
    versions = q.versions_for(ids)
    first = {mid: vs[0] for mid, vs in versions.items() if vs}
    images = showcase([v["id"] for v in first.values()], ALL_LEVELS, per_version=1)
    out = []
    for m in rows:
        v = first.get(m["id"])
        image = images.get(v["id"], [None])[0] if v else None
        out.append({"model": m, "version": v, "image": thumb(image) if image else None,
                    "href": url_for(".model_page", model_id=m["id"], name=slug(m["name"]))})
    return out


def grid_rows(f: q.ModelFilter, sort: str, cursor: str | None, exact: bool = False):
    """(rows, next cursor, the corrected query or None): the search engine for text queries (`exact`: no
    typo correction), the catalog's keyset paging otherwise."""
    if f.query:
        from models_db import search
        from models_db.search.base import SearchQuery
        user = viewer()
        sq = SearchQuery(text=f.query, types=f.types, base_models=f.base_models, tags=[f.tag] if f.tag else [],
                         viewer_id=user.id if user else None, sort=sort,
                         limit=PAGE_SIZE, cursor=cursor, facets=False, highlight=False, correct=not exact)
        result = search.search(sq)
        by_id = {r["id"]: r for r in q.model_rows([h.id for h in result.hits])}
        return [by_id[h.id] for h in result.hits if h.id in by_id], result.next_cursor, result.corrected
    rows, next_cursor, _ = q.list_models(f, sort, PAGE_SIZE, cursor=cursor)
    return rows, next_cursor, None


@bp.get("/models")
@bp.get("/")  # registered first: the canonical address
def home():
    period = request.args.get("period") if request.args.get("period") in PERIODS else "AllTime"
    f = q.ModelFilter(query=request.args.get("query", "").strip(), tag=request.args.get("tag", "").strip(),
                      types=[t for t in multi("types") if t in c.MODEL_TYPES],
                      base_models=[b for b in multi("baseModels") if b in c.BASE_MODELS], period=period)
    sorts = (["Relevance"] if f.query else []) + ["Newest", "Most Downloaded", "Highest Rated"]
    sort = request.args.get("sort") if request.args.get("sort") in sorts else sorts[0]
    exact = request.args.get("exact") == "1"
    rows, next_cursor, corrected = grid_rows(f, sort, request.args.get("cursor") or None, exact)
    return render_template("catalog/home.html", cards=cards(rows), next_cursor=next_cursor, f=f, sort=sort,
                           corrected=corrected, exact=exact,
                           sorts=sorts, periods=PERIODS, types=GRID_TYPES, base_models=c.BASE_MODELS,
                           popular_tags=q.popular_tags())


def visible_model(model_id: int) -> dict:
    """The model row, or 404: deleted models, and drafts to anyone but their owner and staff."""
    rows = q.model_rows([model_id])
    user = viewer()
    if not rows or rows[0]["status"] == "Deleted":
        abort(404)
    m = rows[0]
    if m["status"] != "Published" and not (user and (user.id == m["owner"] or user.is_staff)):
        abort(404)
    return m


def licence(m: dict) -> list[tuple[str, bool]]:
    uses = [u for u in m["allow_commercial_use"].split(",") if u]
    return [("No credit needed", m["allow_no_credit"]), ("Sell images", "Image" in uses),
            ("Run on services", "Rent" in uses), ("Sell this model", "Sell" in uses),
            ("Share merges", m["allow_derivatives"]), ("Other permissions", m["allow_different_license"])]


@bp.get("/models/<id:model_id>")
@bp.get("/models/<id:model_id>/<name>")
def model_page(model_id: int, name: str | None = None):
    m = visible_model(model_id)
    user = viewer()
    versions = q.versions_for([model_id], user.id if user else None, bool(user and user.is_staff)).get(model_id, [])
    if not versions:
        abort(404)
    wanted = parse_id(request.args.get("modelVersionId"))
    version = next((v for v in versions if v["id"] == wanted), versions[0])
    files = q.files_for([version["id"]]).get(version["id"], [])
    gallery = [thumb(i, 450) for i in showcase([version["id"]], ALL_LEVELS, per_version=40).get(version["id"], [])]
    return render_template(
        "catalog/model.html", m=m, versions=versions, version=version, files=files, gallery=gallery,
        reviews=recent_reviews(model_id), comments=recent_comments(model_id), signed_in=user is not None,
        tags=q.tags_for([model_id])[model_id], licence=licence(m), slug=slug(m["name"]),
        trained_words=json.loads(version["trained_words_json"]),
        air=c.air(m["type"], version["base_model"], m["id"], version["id"]),
        owner=bool(user and user.id == m["owner"]), hash_types=c.HASH_TYPES)


@bp.post("/models/<id:model_id>/review")
@login_required
def review(model_id: int):
    version_id = parse_id(request.form.get("modelVersionId", "")) or 0
    rating = request.form.get("rating", "")
    data = {"recommended": request.form.get("recommended") == "true", "details": request.form.get("details", ""),
            **({"rating": parse_int(rating) or rating} if rating else {})}
    if api_call(review_api.save_review, version_id, data):
        flash("Thanks for your review.", "success")
    return redirect(url_for(".model_page", model_id=model_id, modelVersionId=version_id, _anchor="reviews"))


@bp.post("/models/<id:model_id>/comments")
@login_required
def comment(model_id: int):
    if api_call(review_api.add_comment, model_id, {"content": request.form.get("content", "")}):
        flash("Comment posted.", "success")
    return redirect(url_for(".model_page", model_id=model_id, _anchor="comments"))


@bp.get("/images/<id:image_id>")
def image_page(image_id: int):
    from gpu.png_meta import meta_to_a1111
    image = Image.get_or_none(Image.id == image_id)
    user = viewer()
    if image is None or not may_see(image.private or image.status != "Ready", image.user_id, user):
        abort(404)  # others' unposted outputs answer as missing images do
    meta = json.loads(image.meta_json) if image.meta_json else {}
    resources = list(ImageResource.select(ImageResource, c.ModelVersion, c.Model)
                     .join(c.ModelVersion).join(c.Model)
                     .where(ImageResource.image == image, c.Model.status == "Published"))
    return render_template("catalog/image.html", image=image, t=thumb(image.__data__ | {"id": image.id}, 1024),
                           meta=meta, parameters=meta_to_a1111(meta) if meta.get("prompt") else "",
                           resources=resources, author=image.user.username,
                           may_post=bool(user and user.id == image.user_id and image.private))


@bp.post("/images/<id:image_id>/post")
@login_required
def post_image(image_id: int):
    """The owner's "Post" on an unposted output's page: the same posting as POST /api/v1/posts."""
    from web.images import publish
    if api_call(publish, viewer(), [image_id]):
        flash("Posted: the image is public now.", "success")
    return redirect(url_for(".image_page", image_id=image_id))


@bp.get("/user/<username>")
def creator(username: str):
    person = User.get_or_none(User.username == username, User.is_active == True)  # noqa: E712
    if person is None:
        abort(404)
    user = viewer()
    own = bool(user and (user.id == person.id or user.is_staff))
    query = q.with_owner().where(c.Model.owner == person.id, c.Model.status != "Deleted")
    if not own:
        query = query.where(c.Model.status == "Published")
    rows = list(query.order_by(c.Model.updated_at.desc(), c.Model.id.desc()).limit(200).dicts())
    totals = {"models": len(rows), "downloads": sum(r["download_count"] for r in rows)}
    images = list(Image.select().where(Image.user == person.id, Image.status == "Ready", shown_to(None))
                  .order_by(Image.id.desc()).limit(24).dicts())
    return render_template("catalog/creator.html", person=person, cards=cards(rows), own=own, totals=totals,
                           images=[thumb(i, 450) for i in images])


@bp.get("/tags/<name>")
def tag(name: str):
    return redirect(url_for(".home", tag=name))
