"""Civitai API v1, read side: models, versions, by-hash lookups, tags, creators, enums."""
from __future__ import annotations

import json

from flask import Blueprint, jsonify, request

from models_db import catalog as c
from models_db import catalog_queries as q
from models_db.images import browsing_mask, showcase
from models_db.cursors import BadCursor
from models_db.ids import parse_int
from web.api import (
    MAX_PAGE,
    absolute,
    boolean,
    current_api_user,
    download_url,
    error,
    ids,
    integer,
    multi,
    page_number,
    page_url,
    parsed,
)
from web.bodies import Hashes
from web.openapi import BOOL, INT, LIMIT, NUM, PAGE, PERIOD, STR, URL, array, doc, enum, obj, paged, param, ref

bp = Blueprint("catalog", __name__)


def iso(value) -> str | None:
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z" if value else None


def file_json(f: dict) -> dict:
    return {
        "id": f["id"], "sizeKB": f["size_bytes"] / 1024, "name": f["name"], "type": f["type"],
        "pickleScanResult": f["pickle_scan_result"], "pickleScanMessage": f["pickle_scan_message"],
        "virusScanResult": f["virus_scan_result"], "virusScanMessage": f["virus_scan_message"],
        "scannedAt": iso(f["scanned_at"]),
        "metadata": {"format": f["format"], "size": f["size_kind"], "fp": f["fp"]},
        "hashes": {t: f["hashes"][t] for t in c.HASH_TYPES if t in f["hashes"]},
        "downloadUrl": download_url(f["version"], type=f["type"], format=f["format"]),
        "primary": bool(f["primary"]),
    }


def showcase_json(row: dict) -> dict:
    from web.images import image_url
    out = {"id": row["id"], "url": image_url(row), "nsfwLevel": row["nsfw_level"], "width": row["width"],
           "height": row["height"], "hash": row["blurhash"], "type": "image", "hasMeta": bool(row["meta_json"])}
    if row["meta_json"]:
        out["meta"] = json.loads(row["meta_json"])
    return out


def version_json(v: dict, model: dict, files: list[dict], with_model: bool, primary_only=False,
                 images: list[dict] = ()) -> dict:
    if primary_only:
        files = [f for f in files if f["primary"]]
    out = {"id": v["id"]}
    if with_model:
        out["modelId"] = model["id"]
    out.update({
        "index": v["index"], "name": v["name"], "description": v["description"] or None,
        "baseModel": v["base_model"], "baseModelType": v["base_model_type"],
        "createdAt": iso(v["created_at"]), "updatedAt": iso(v["updated_at"]),
        "publishedAt": iso(v["published_at"]), "status": v["status"], "availability": v["availability"],
        "nsfwLevel": v["nsfw_level"], "trainedWords": json.loads(v["trained_words_json"]),
        "earlyAccessTimeFrame": v["early_access_time_frame"], "uploadType": v["upload_type"],
        "air": c.air(model["type"], v["base_model"], model["id"], v["id"]),
        "stats": {"downloadCount": v["download_count"], "ratingCount": v["rating_count"],
                  "rating": v["rating"], "thumbsUpCount": v["thumbs_up_count"],
                  "thumbsDownCount": v["thumbs_down_count"]},
    })
    if with_model:
        out["model"] = {"name": model["name"], "type": model["type"], "nsfw": model["nsfw"],
                        "poi": model["poi"]}
    out["files"] = [file_json(f) for f in files]
    out["images"] = [showcase_json(i) for i in images]
    out["downloadUrl"] = download_url(v["id"])
    return out


def model_json(m: dict, versions: list[dict], files: dict, tags: list[str], primary_only=False,
               images: dict | None = None) -> dict:
    return {
        "id": m["id"], "name": m["name"], "description": m["description"], "type": m["type"],
        "poi": m["poi"], "nsfw": m["nsfw"], "nsfwLevel": m["nsfw_level"],
        "allowNoCredit": m["allow_no_credit"],
        "allowCommercialUse": [v for v in m["allow_commercial_use"].split(",") if v] or ["None"],
        "allowDerivatives": m["allow_derivatives"], "allowDifferentLicense": m["allow_different_license"],
        "minor": m["minor"], "availability": m["availability"], "cosmetic": None,
        "status": m["status"], "createdAt": iso(m["created_at"]), "publishedAt": iso(m["published_at"]),
        "stats": {"downloadCount": m["download_count"], "favoriteCount": m["favorite_count"],
                  "thumbsUpCount": m["thumbs_up_count"], "thumbsDownCount": m["thumbs_down_count"],
                  "commentCount": m["comment_count"], "ratingCount": m["rating_count"], "rating": m["rating"],
                  "tippedAmountCount": m["tipped_amount_count"]},
        "creator": {"username": m["username"], "image": m["owner_image"]},
        "tags": tags,
        "modelVersions": [version_json(v, m, files.get(v["id"], []), False, primary_only,
                                       (images or {}).get(v["id"], [])) for v in versions],
    }


def viewer():
    user = current_api_user()
    return (user.id if user else None), bool(user and user.is_staff)


def models_json(rows: list[dict], primary_only=False, require_versions=True) -> list[dict]:
    viewer_id, staff = viewer()
    ids = [m["id"] for m in rows]
    versions = q.versions_for(ids, viewer_id, staff)
    version_ids = [v["id"] for vs in versions.values() for v in vs]
    files = q.files_for(version_ids)
    tags = q.tags_for(ids)
    images = showcase(version_ids, browsing_mask(current_api_user()))
    return [model_json(m, versions.get(m["id"], []), files, tags[m["id"]], primary_only, images)
            for m in rows if versions.get(m["id"]) or not require_versions]


def visible(model: dict) -> bool:
    viewer_id, staff = viewer()
    return model["status"] == "Published" or staff or model["owner"] == viewer_id


MODEL_QUERY = [
    LIMIT(100), PAGE, param("cursor", description="opaque; from metadata.nextCursor"), param("query"), param("tag"),
    param("username"), param("types", enum(c.MODEL_TYPES), many=True),
    param("sort", enum(q.SORTS)), PERIOD, param("rating", NUM), param("primaryFileOnly", BOOL),
    param("allowNoCredit", BOOL), param("allowDerivatives", BOOL), param("allowDifferentLicenses", BOOL),
    param("allowCommercialUse", enum(c.COMMERCIAL_USES)), param("nsfw", BOOL),
    param("baseModels", enum(c.BASE_MODELS), many=True), param("ids", INT, many=True)]
SIMPLE_QUERY = [LIMIT(200), PAGE, param("cursor", description="the next page number"), param("query")]


@bp.get("/api/v1/models")
@doc("List published models", "catalog", response=paged(ref("Model")), params=MODEL_QUERY)
def list_models():
    limit = integer("limit", 100, 1, 100)
    page = page_number()
    cursor = request.args.get("cursor") or None
    sort = request.args.get("sort") or "Newest"
    if sort not in q.SORTS:
        error(400, f"sort must be one of: {', '.join(q.SORTS)}")
    types = multi("types")
    bad = [t for t in types if t not in c.MODEL_TYPES]
    if bad:
        error(400, f"unknown model type {bad[0]!r}; one of: {', '.join(c.MODEL_TYPES)}")
    period = request.args.get("period") or "AllTime"
    if period not in ("AllTime", *q.PERIOD_DAYS):
        error(400, "period must be one of: AllTime, Year, Month, Week, Day")
    commercial = request.args.get("allowCommercialUse", "")
    if commercial and commercial not in c.COMMERCIAL_USES:
        error(400, "allowCommercialUse must be one of: None, Image, Rent, Sell")
    rating = request.args.get("rating", "").strip()
    try:
        rating = float(rating) if rating else None
    except ValueError:
        rating = -1.0
    if rating is not None and not 0 <= rating <= 5:
        error(400, "rating must be a number from 0 to 5")
    f = q.ModelFilter(
        query=request.args.get("query", "").strip(), tag=request.args.get("tag", "").strip(),
        username=request.args.get("username", "").strip(), types=types, base_models=multi("baseModels"),
        ids=ids("ids"), nsfw=boolean("nsfw"), period=period, rating=rating,
        allow_no_credit=boolean("allowNoCredit"), allow_derivatives=boolean("allowDerivatives"),
        allow_different_license=boolean("allowDifferentLicenses"), allow_commercial_use=commercial)
    from web import search
    if search.handles(request.args):
        rows, next_cursor, total = search.models_page(f, sort, limit, cursor, page)
        total = total if page else None
    else:
        rows, next_cursor, total = q.list_models(f, sort, limit, cursor=cursor, page=None if cursor else page)
    items = models_json(rows, primary_only=bool(boolean("primaryFileOnly")))
    metadata: dict = {"pageSize": limit}
    if total is not None:
        pages = max(1, -(-total // limit))
        metadata.update(totalItems=total, currentPage=page, totalPages=pages)
        if page < pages:
            metadata["nextPage"] = page_url(page=page + 1, cursor=None)
        if page > 1:
            metadata["prevPage"] = page_url(page=page - 1, cursor=None)
    elif next_cursor:
        metadata["nextCursor"] = next_cursor
        metadata["nextPage"] = page_url(cursor=next_cursor, page=None)
    return jsonify(items=items, metadata=metadata)


@bp.get("/api/v1/models/<id:model_id>")
@doc("One model", "catalog", response=ref("Model"))
def get_model(model_id: int):
    rows = q.model_rows([model_id])
    if not rows or rows[0]["status"] == "Deleted" or not visible(rows[0]):
        error(404, f"No model with id {model_id}")
    return jsonify(models_json(rows, require_versions=False)[0])


def versions_json(version_ids: list[int]) -> list[dict]:
    """Full ModelVersion objects (with modelId and model) for these ids, skipping invisible ones."""
    from models_db.catalog import ModelVersion
    found = {v["id"]: v for v in ModelVersion.select().where(ModelVersion.id.in_(version_ids)).dicts()}
    models = {m["id"]: m for m in q.model_rows({v["model"] for v in found.values()})}
    files = q.files_for(list(found))
    images = showcase(list(found), browsing_mask(current_api_user()))
    viewer_id, staff = viewer()
    out = []
    for vid in version_ids:
        v = found.get(vid)
        m = models.get(v["model"]) if v else None
        if not v or not m or m["status"] == "Deleted":
            continue
        if v["status"] != "Published" and not staff and m["owner"] != viewer_id:
            continue
        out.append(version_json(v, m, files.get(vid, []), True, images=images.get(vid, [])))
    return out


@bp.get("/api/v1/model-versions/<id:version_id>")
@doc("One model version", "catalog", response=ref("ModelVersion"))
def get_version(version_id: int):
    found = versions_json([version_id])
    if not found:
        error(404, f"No model version with id {version_id}")
    return jsonify(found[0])


@bp.get("/api/v1/model-versions/by-hash/<string:file_hash>")
@doc("The version holding a file with this SHA256, AutoV1, AutoV2, CRC32 or BLAKE3 (any case)", "catalog",
     response=ref("ModelVersion"))
def get_version_by_hash(file_hash: str):
    found = versions_json(q.version_ids_by_hash([file_hash], *viewer()))
    if not found:
        error(404, "Model not found")
    return jsonify(found[0])


@bp.post("/api/v1/model-versions/by-hash")
@doc("Versions for up to 100 hashes", "catalog", response=array(ref("ModelVersion")), body=Hashes)
def versions_by_hash():
    return jsonify(versions_json(q.version_ids_by_hash(parsed(Hashes).root, *viewer())))


def _simple_page(fetch, make):
    """Offset paging; the cursor is the next page number, for clients that only follow nextCursor."""
    limit = integer("limit", 20, 1, 200)
    cursor = request.args.get("cursor", "")
    page = parse_int(cursor, 1, MAX_PAGE) if cursor else page_number() or 1
    if page is None:
        raise BadCursor()
    rows, total = fetch(request.args.get("query", "").strip(), limit, page)
    pages = max(1, -(-total // limit))
    metadata = {"totalItems": total, "currentPage": page, "pageSize": limit, "totalPages": pages}
    if page < pages:
        metadata["nextCursor"] = str(page + 1)
        metadata["nextPage"] = page_url(page=page + 1, cursor=None)
    if page > 1:
        metadata["prevPage"] = page_url(page=page - 1)
    return jsonify(items=[make(r) for r in rows], metadata=metadata)


@bp.get("/api/v1/tags")
@doc("Tags with model counts", "catalog", response=paged(obj(name=STR, modelCount=INT, link=URL)),
     params=SIMPLE_QUERY)
def list_tags():
    return _simple_page(q.tag_page, lambda r: {
        "name": r[0], "modelCount": r[1], "link": absolute("catalog.list_models", tag=r[0])})


@bp.get("/api/v1/creators")
@doc("Creators with model counts", "catalog", params=SIMPLE_QUERY,
     response=paged(obj(username=STR, modelCount=INT, link=URL, image={"type": ["string", "null"]})))
def list_creators():
    return _simple_page(q.creator_page, lambda r: {
        "username": r[0], "modelCount": r[2], "link": absolute("catalog.list_models", username=r[0]),
        "image": r[1]})


@bp.get("/api/v1/enums")
@doc("Enumerations", "catalog", response={"type": "object", "additionalProperties": {"type": ["array", "object"]}})
def enums():
    return jsonify({
        "ModelType": list(c.MODEL_TYPES), "ModelFileType": list(c.FILE_TYPES),
        "ActiveBaseModel": list(c.BASE_MODELS), "BaseModel": list(c.BASE_MODELS),
        "BaseModelType": ["Standard", "Inpainting", "Refiner", "Pix2Pix"],
        "ModelFileFormat": list(c.FILE_FORMATS), "ModelFileSize": list(c.FILE_SIZES),
        "ModelFileFp": list(c.FILE_FPS), "ModelStatus": list(c.MODEL_STATUSES),
        "CommercialUse": list(c.COMMERCIAL_USES), "HashType": list(c.HASH_TYPES),
        "ScanResultCode": list(c.SCAN_RESULTS), "NsfwLevel": c.NSFW_LEVELS,
    })
