"""GET /api/download/models/:versionId — pick the file, check access, count, redirect to storage.
The redirect target is a signed, expiring URL that works without the API key."""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid

from flask import Blueprint, redirect, request

import settings
from metrics import definitions as m
from models_db.catalog import FILE_FORMATS, FILE_FPS, FILE_SIZES, FILE_TYPES, Model, ModelFile, ModelVersion
from models_db.db import on_commit
from models_db.ids import parse_id, parse_int
from models_db.storage import content_disposition, get_store
from web.api import absolute, current_api_user, error, serve_file
from web.openapi import BINARY, INT, doc, enum, param

bp = Blueprint("downloads", __name__)
LOGIN_MESSAGE = ("The creator of this asset requires you to be logged in to download it: send an API key "
                 "as 'Authorization: Bearer <key>' or ?token=<key>.")
PREFERENCE = {"format": "SafeTensor", "size_kind": "pruned", "fp": "fp16"}


def pick_file(files: list[ModelFile], args) -> ModelFile | None:
    if args.get("fileId"):
        file_id = parse_id(args["fileId"])
        return next((f for f in files if f.id == file_id), None)
    wanted = {"type": args.get("type"), "format": args.get("format"), "size_kind": args.get("size"),
              "fp": args.get("fp")}
    matching = [f for f in files if all(not v or (getattr(f, k) or "").lower() == v.lower()
                                        for k, v in wanted.items())]

    def score(f: ModelFile):
        prefs = [getattr(f, k) == v for k, v in PREFERENCE.items()]
        return (f.primary, f.type == "Model", *prefs, -f.id)
    return max(matching, key=score, default=None)


def sign(file_id: int, expires: int) -> str:
    key = settings.get().secret_key.encode()
    return hmac.new(key, f"download:{file_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


@bp.get("/api/download/models/<id:version_id>")
@doc("Download a file of a version: 307 to a signed storage URL that needs no key", "downloads", status=307,
     params=[param("type", enum(FILE_TYPES)), param("format", enum(FILE_FORMATS)),
             param("size", enum(FILE_SIZES)), param("fp", enum(FILE_FPS)), param("fileId", INT)],
     errors={401: "the creator requires a logged-in download", 403: "the file failed its scan"})
def download_version(version_id: int):
    user = current_api_user()
    version = ModelVersion.select(ModelVersion, Model).join(Model).where(ModelVersion.id == version_id).first()
    owner_or_staff = user is not None and (user.is_staff or version is not None and version.model.owner_id == user.id)
    if version is None or version.model.status == "Deleted" or (
            version.status != "Published" and not owner_or_staff):
        error(404, f"No model version with id {version_id}")
    if version.login_required and user is None:
        error(401, "Unauthorized", message=LOGIN_MESSAGE)
    files = list(version.files.where(ModelFile.status != "Pending"))
    file = pick_file(files, request.args)
    if file is None:
        error(404, "No file of this version matches the requested type/format/size/fp")
    if not file.downloadable:
        error(403, f"{file.name} is not downloadable: {file.pickle_scan_message or 'it failed its scan'}")
    if request.method == "GET":  # a HEAD probe is not a download
        from jobs.downloads import record_download
        user_id = user.id if user else None
        on_commit(lambda: record_download.send(uuid.uuid4().hex, file.id, user_id))
        m.downloads.inc()
    ttl = settings.get().download_link_ttl
    target = get_store().signed_url(file.blob, file.name, ttl)
    if target is None:
        expires = int(time.time()) + ttl
        target = absolute("downloads.blob", file_id=file.id, filename=file.name, expires=expires,
                          sig=sign(file.id, expires),
                          **{"response-content-disposition": content_disposition(file.name)})
    response = redirect(target, code=307)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/api/download/files/<id:file_id>/<path:filename>")
@doc("The file bytes (signed link); honours Range with 206/416", "downloads", response=BINARY,
     media="application/octet-stream",
     params=[param("expires", INT, required=True), param("sig", required=True), param("Range", where="header")],
     errors={206: {"description": "a range of the bytes",
                   "content": {"application/octet-stream": {"schema": BINARY}}},
             403: "bad or expired link", 416: "range not satisfiable"})
def blob(file_id: int, filename: str):
    expires = parse_int(request.args.get("expires", ""), 0)
    given = request.args.get("sig", "").encode()  # bytes: compare_digest refuses non-ASCII text
    if expires is None or not hmac.compare_digest(given, sign(file_id, expires).encode()):
        error(403, "invalid download link")
    if expires < time.time():
        error(403, "this download link has expired; ask /api/download/models/:id for a new one")
    file = ModelFile.get_or_none(ModelFile.id == file_id)
    if file is None or not file.downloadable:
        error(404, "No such file")
    response = serve_file(file.blob, "application/octet-stream", 3600)
    response.headers["Content-Disposition"] = content_disposition(file.name)
    return response
