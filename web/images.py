"""Images: upload, the Civitai-compatible /api/v1/images listing, image files and their resized
variants, reactions, reports and posts."""
from __future__ import annotations

import io
import json
from datetime import timedelta

from flask import Blueprint, jsonify, request
from peewee import JOIN, Tuple

from models_db import images as im
from models_db.accounts import User
from models_db.catalog import Model, ModelVersion, may_manage, visible_to
from models_db.catalog_queries import visible_versions
from models_db.cursors import decode_keyset, encode_keyset
from models_db.db import on_commit, transaction, utcnow
from models_db.ids import parse_id
from models_db.names import strip_bidi_controls
from models_db.stats import PERIOD_DAYS
from web.api import (
    FORM_OVERHEAD,
    absolute,
    body_limit,
    boolean,
    current_api_user,
    error,
    integer,
    page_number,
    page_url,
    parsed,
    require_user,
    send_blob,
)
from web.bodies import PostIn, ReportIn
from web.openapi import (
    BINARY, INT, LIMIT, PAGE, PERIOD, STR, URL, array, doc, enum, multipart, obj, paged, param, ref)

bp = Blueprint("images", __name__)
MAX_IMAGE_BYTES = 50 << 20
SORTS = {"Newest": im.Image.id,
         "Most Reactions": (im.Image.like_count + im.Image.heart_count + im.Image.laugh_count
                            + im.Image.cry_count + im.Image.dislike_count),
         "Most Comments": im.Image.comment_count}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}


def level_name(level: int) -> str:
    top = max((bit for bit in im.API_NAMES if level & bit), default=im.PG)
    return im.API_NAMES[top]


def image_url(image: dict | im.Image, width: int | None = None) -> str:
    get = image.get if isinstance(image, dict) else lambda k: getattr(image, k)
    ext = EXTENSIONS.get(get("mime") or "", "jpeg")
    return absolute("images.image_file", image_id=get("id"), width=width or get("width") or 0,
                    name=f"{get('id')}.{ext}")


def image_json(row: dict, with_meta: bool = True) -> dict:
    meta = json.loads(row["meta_json"]) if row.get("meta_json") else None
    return {
        "id": row["id"], "url": image_url(row), "hash": row["blurhash"], "width": row["width"],
        "height": row["height"], "nsfwLevel": level_name(row["nsfw_level"]), "nsfw": row["nsfw_level"] >= im.R,
        "browsingLevel": row["nsfw_level"], "createdAt": row["created_at"].isoformat(timespec="milliseconds") + "Z",
        "postId": row["post"],
        "stats": {"cryCount": row["cry_count"], "laughCount": row["laugh_count"], "likeCount": row["like_count"],
                  "dislikeCount": row["dislike_count"], "heartCount": row["heart_count"],
                  "commentCount": row["comment_count"]},
        "meta": meta if with_meta else None, "username": row["username"],
        "baseModel": row.get("base_model"), "modelVersionIds": row.get("version_ids", []),
    }


def requested_mask() -> int:
    """The browsing level of this request: the nsfw parameter, else the viewer's setting."""
    value = request.args.get("nsfw", "").strip()
    if not value:
        return im.browsing_mask(current_api_user())
    if value in im.BROWSING:
        return im.BROWSING[value]
    flag = boolean("nsfw")
    return im.BROWSING["X"] if flag else im.BROWSING["None"]


IMAGE_QUERY = [
    LIMIT(200), param("cursor"), PAGE, param("postId", INT), param("modelId", INT), param("modelVersionId", INT),
    param("username"), param("nsfw", description="None|Soft|Mature|X or true/false"),
    param("sort", enum(SORTS)), PERIOD, param("withMeta", {"type": "boolean"})]
COUNTS = obj(**{f"{k.lower()}Count": INT for k in im.REACTIONS})


@bp.get("/api/v1/images")
@doc("Images, as Civitai's images API", "images", response=paged(ref("Image")), params=IMAGE_QUERY)
def list_images():
    limit = integer("limit", 100, 1, 200)
    sort = request.args.get("sort") or "Newest"
    if sort not in SORTS:
        error(400, f"sort must be one of: {', '.join(SORTS)}")
    period = request.args.get("period") or "AllTime"
    if period not in ("AllTime", *PERIOD_DAYS):
        error(400, "period must be one of: AllTime, Year, Month, Week, Day")
    key = SORTS[sort]
    Img = im.Image
    query = (Img.select(Img, User.username, ModelVersion.base_model, key.alias("sort_key"))
             .join(User, on=(Img.user == User.id))
             .switch(Img).join(ModelVersion, JOIN.LEFT_OUTER, on=(Img.model_version == ModelVersion.id))
             .where(im.listed(requested_mask(), current_api_user())))
    for name, column in (("postId", Img.post), ("modelVersionId", Img.model_version)):
        value = integer(name, None, 1)
        if value:
            query = query.where(column == value)
    model_id = integer("modelId", None, 1)
    if model_id:
        query = query.where(Img.model_version.in_(ModelVersion.select(ModelVersion.id).where(
            ModelVersion.model == model_id)))
    if model_id or request.args.get("modelVersionId"):  # the images of a version you cannot see are not listed
        query = query.where(Img.model_version.in_(seen_versions()))
    if request.args.get("username"):
        query = query.where(User.username == request.args["username"])
    if period in PERIOD_DAYS:
        query = query.where(Img.created_at >= utcnow() - timedelta(days=PERIOD_DAYS[period]))
    if boolean("withMeta"):
        query = query.where(Img.meta_json.is_null(False))
    cursor = request.args.get("cursor", "")
    if cursor:
        value, last = decode_keyset(cursor, dated=False)
        query = query.where(Tuple(key, Img.id) < Tuple(value, last))
    else:
        page = page_number()
        if page:
            query = query.offset((page - 1) * limit)
    rows = list(query.order_by(key.desc(), Img.id.desc()).limit(limit + 1).dicts())
    more = len(rows) > limit
    rows = rows[:limit]
    add_version_ids(rows)
    metadata = {"pageSize": limit}
    if more:
        next_cursor = encode_keyset(rows[-1]["sort_key"], rows[-1]["id"])
        metadata.update(nextCursor=next_cursor, nextPage=page_url(cursor=next_cursor, page=None))
    return jsonify(items=[image_json(r) for r in rows], metadata=metadata)


@bp.post("/api/v1/images")
@body_limit(lambda s: MAX_IMAGE_BYTES + FORM_OVERHEAD)
@require_user("write")
@doc("Upload an image (processed and NSFW-scored by workers)", "images", status=202,
     response=obj(("id", "status"), id=INT, status=STR, statusUrl=URL),
     body=multipart(("file",), file=BINARY, postId=INT, modelVersionId=INT),
     errors={404: "no such post or model version"})
def upload_image():
    """multipart/form-data: file, optional postId and modelVersionId (a showcase image of your own
    version, a community image of someone else's)."""
    from PIL import Image as PILImage

    from gpu.image_files import FORMATS, MAX_PIXELS, MAX_SIDE
    from jobs.images import process_image, staging_path
    user = current_api_user()
    sent = request.files.get("file")
    if sent is None:
        error(400, "send the image as multipart/form-data in a field named 'file'")
    data = sent.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        error(413, f"images larger than {MAX_IMAGE_BYTES >> 20} MiB are not accepted")
    try:  # the header only: cheap, and enough to refuse non-images and decompression bombs now
        with PILImage.open(io.BytesIO(data)) as probe:
            fmt, (width, height) = probe.format, probe.size
    except PILImage.DecompressionBombError as exc:
        error(400, f"image too large, refused as a decompression bomb: {exc}")
    except Exception:
        error(400, "not an image: send a PNG, JPEG or WebP file")
    if fmt not in FORMATS:
        error(400, f"unsupported image format {fmt}: send PNG, JPEG or WebP")
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        error(400, f"image too large: {width}x{height} (at most {MAX_PIXELS} pixels, {MAX_SIDE} per side)")
    post_id, version_id = request.form.get("postId"), request.form.get("modelVersionId")
    post_number = parse_id(post_id)
    post = im.Post.get_or_none(im.Post.id == post_number) if post_number else None
    if post_id and (post is None or post.user_id != user.id):
        error(404, f"No post with id {post_id}")
    version = visible_version(version_id) if version_id else (post.model_version if post else None)
    with transaction():
        image = im.Image.create(user=user, post=post, model_version=version,
                                filename=strip_bidi_controls(sent.filename or "")[:255],
                                showcase=version is not None and may_manage(version, user))
        staging_path(image.id).write_bytes(data)
        on_commit(lambda: process_image.send(image.id))
    return jsonify(id=image.id, status=image.status, statusUrl=absolute("images.get_image", image_id=image.id)), 202


@bp.get("/api/v1/images/<id:image_id>")
@doc("One image (owners also see Pending/Rejected with the reason)", "images", response=ref("Image"))
def get_image(image_id: int):
    Img = im.Image
    row = (Img.select(Img, User.username, ModelVersion.base_model).join(User, on=(Img.user == User.id))
           .switch(Img).join(ModelVersion, JOIN.LEFT_OUTER, on=(Img.model_version == ModelVersion.id))
           .where(Img.id == image_id).dicts().first())
    user = current_api_user()
    if row is None or not im.may_see(row["private"] or row["status"] != "Ready", row["user"], user):
        error(404, f"No image with id {image_id}")  # others' unposted outputs answer as missing ones do
    if row["status"] != "Ready":
        return jsonify(id=row["id"], status=row["status"], error=row["error"])
    add_version_ids([row])
    return jsonify(image_json(row) | {"status": row["status"], "private": row["private"]})


def add_version_ids(rows: list[dict]) -> None:
    """Each row's modelVersionIds: its version and the resources it names, those the viewer may see."""
    versions = {}
    for image_id, version_id in im.ImageResource.select(im.ImageResource.image, im.ImageResource.version).where(
            im.ImageResource.image.in_([r["id"] for r in rows])).tuples():
        versions.setdefault(image_id, []).append(version_id)
    for r in rows:
        r["version_ids"] = sorted({*versions.get(r["id"], []), *([r["model_version"]] if r["model_version"] else [])})
    hide_unseen_versions(rows)


def seen_versions():
    """Subquery: ids of the versions the current user may see."""
    user = current_api_user()
    return ModelVersion.select(ModelVersion.id).join(Model).where(
        visible_versions(user.id if user else None, bool(user and user.is_staff)))


def hide_unseen_versions(rows: list[dict]) -> None:
    """Image rows name only versions the current user may see (never someone else's draft)."""
    named = {v for r in rows for v in r["version_ids"]}
    seen = {v for (v,) in seen_versions().where(ModelVersion.id.in_(named)).tuples()} if named else set()
    for r in rows:
        r["version_ids"] = [v for v in r["version_ids"] if v in seen]
        if r["model_version"] not in seen:
            r["base_model"] = None


@bp.get("/images/<id:image_id>/width=<index:width>/<name>")
def image_file(image_id: int, width: int, name: str):
    image = im.Image.get_or_none(im.Image.id == image_id)
    if image is None or image.status != "Ready" or not im.may_see(image.private, image.user_id, current_api_user()):
        error(404, "No such image")
    blob, mime = image.blob, image.mime
    if width < (image.width or 0):
        variant = (im.ImageVariant.select().where(im.ImageVariant.image == image, im.ImageVariant.width >= width)
                   .order_by(im.ImageVariant.width).first())
        if variant is not None:
            blob, mime = variant.blob, variant.mime
    response = send_blob(blob, mime, name)
    if image.private:  # never kept by a shared cache
        response.cache_control.public = False
        response.cache_control.private = True
    return response


@bp.route("/api/v1/images/<id:image_id>/reactions/<kind>", methods=["PUT", "DELETE"])
@require_user("write")
@doc("Add (PUT) or remove (DELETE) a reaction: one per user and kind", "images", response=COUNTS,
     path={"kind": enum(im.REACTIONS)}, errors={400: "unknown reaction"})
def reaction(image_id: int, kind: str):
    if kind not in im.REACTIONS:
        error(400, f"reaction must be one of: {', '.join(im.REACTIONS)}")
    image = visible_image(image_id)
    with transaction():
        im.react(image, current_api_user(), kind, request.method == "PUT")
    image = im.Image.get_by_id(image.id)
    return jsonify({f"{k.lower()}Count": getattr(image, f"{k.lower()}_count") for k in im.REACTIONS})


@bp.post("/api/v1/images/<id:image_id>/report")
@require_user("write")
@doc("Report an image to the moderators", "images", status=202, response=obj(status=STR), body=ReportIn)
def report(image_id: int):
    reason = parsed(ReportIn).reason
    with transaction():
        im.report(visible_image(image_id), current_api_user(), reason)
    return jsonify(status="reported"), 202


@bp.post("/api/v1/posts")
@require_user("write")
@doc("Create a post (a group of images, optionally on a model version). imageIds posts your own images, "
     "generated outputs included: they become public, with the resources their generation used",
     "images", status=201, body=PostIn,
     response=obj(id=INT, title=STR, modelVersionId={"type": ["integer", "null"]}, imageIds=array(INT)),
     errors={404: "no such model version, or not your image", 409: "an image is in a post already"})
def create_post():
    data = parsed(PostIn)
    post = publish(current_api_user(), data.imageIds or [], data.title or "", data.modelVersionId)
    return jsonify(id=post.id, title=post.title, modelVersionId=post.model_version_id,
                   imageIds=list(dict.fromkeys(data.imageIds or []))), 201


def publish(user, image_ids: list[int], title: str = "", version_id: int | None = None) -> im.Post:
    """A new post of the user's own images (none: an empty post that uploads name by postId), in one
    transaction; any refusal is a 4xx JSON error with nothing posted."""
    from models_db.posts import PostRefused, post_images
    version = visible_version(version_id) if version_id is not None else None
    try:
        with transaction():
            return post_images(user, image_ids, title, version)
    except PostRefused as exc:
        error(exc.status, exc.message)


def visible_version(version_id) -> ModelVersion:
    """The version a post or image names: 404 when missing or not visible to this user (a draft of
    someone else's answers exactly as a missing version does)."""
    number = parse_id(version_id)
    version = ModelVersion.get_or_none(ModelVersion.id == number) if number else None
    if version is None or not visible_to(version, current_api_user()):
        error(404, f"No model version with id {version_id}")
    return version


def visible_image(image_id: int) -> im.Image:
    image = im.Image.get_or_none(im.Image.id == image_id)
    if image is None or image.status != "Ready" or not im.may_see(image.private, image.user_id, current_api_user()):
        error(404, f"No image with id {image_id}")
    return image
