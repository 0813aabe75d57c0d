"""Uploading model files: one multipart request, or a resumable upload in chunks for multi-GB files.
The web process only writes the received bytes; hashing and checks run in the store/ingest actors."""
from __future__ import annotations

import fcntl
import os
import re

from flask import Blueprint, jsonify, request

import settings
from models_db.catalog import FILE_TYPES
from models_db.db import on_commit, transaction, utcnow
from models_db.names import strip_bidi_controls
from models_db.uploads import Upload, part_path
from web.api import FORM_OVERHEAD, absolute, body_limit, current_api_user, error, parsed, require_user
from web.bodies import NewUpload
from web.creators import owned_version
from web.openapi import BINARY, doc, enum, multipart, param, ref

bp = Blueprint("uploads", __name__)
RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")
COPY_CHUNK = 1 << 20


def clean_filename(name) -> str:
    """The base name, without bidirectional controls ("cat\u202egnp.exe" would read as "catexe.png")."""
    name = strip_bidi_controls(os.path.basename(str(name or "").replace("\\", "/"))).strip()
    if not name or name in (".", "..") or len(name) > 255 or any(ord(ch) < 32 for ch in name):
        error(400, "a file name of 1-255 printable characters is required")
    return name


def upload_json(upload: Upload) -> dict:
    return {"id": upload.id, "modelVersionId": upload.version_id, "filename": upload.filename,
            "type": upload.file_type, "size": upload.total_size, "offset": upload.received,
            "processed": upload.processed, "state": upload.state, "error": upload.error,
            "fileId": upload.file_id, "chunkSize": settings.get().upload_chunk_bytes,
            "uploadUrl": absolute("uploads.put_chunk", upload_id=upload.id)}


def finish(upload: Upload) -> None:
    """All bytes are in: hand over to the store actor (after this transaction commits)."""
    from jobs.uploads import store_upload
    upload.state, upload.updated_at = "processing", utcnow()
    upload.save()
    on_commit(lambda: store_upload.send(upload.id))


def new_upload(version_id: int, filename, size: int, file_type) -> Upload:
    version = owned_version(version_id)
    if file_type not in FILE_TYPES:
        error(400, f"type must be one of: {', '.join(FILE_TYPES)}")
    if not isinstance(size, int) or size <= 0:
        error(400, "size must be a positive number of bytes")
    if size > settings.get().max_upload_bytes:
        error(413, f"files larger than {settings.get().max_upload_bytes} bytes are not accepted")
    return Upload.create(version=version, user=current_api_user(), filename=clean_filename(filename),
                         file_type=file_type, total_size=size)


@bp.post("/api/v1/model-versions/<id:version_id>/files")
@body_limit(lambda s: s.max_upload_bytes + FORM_OVERHEAD)
@require_user("write")
@doc("Upload a file in one multipart request", "creators", status=202, response=ref("Upload"),
     body=multipart(("file",), file=BINARY, type=enum(FILE_TYPES)))
def post_file(version_id: int):
    """multipart/form-data with a `file` field (and optional `type`)."""
    sent = request.files.get("file")
    if sent is None:
        error(400, "send the file as multipart/form-data in a field named 'file'")
    owned_version(version_id)
    part_tmp = part_path(f"form-{os.getpid()}-{id(sent)}")
    sent.save(part_tmp)
    size = part_tmp.stat().st_size
    try:
        with transaction():
            upload = new_upload(version_id, sent.filename, size, request.form.get("type", "Model"))
            upload.received = size
            os.replace(part_tmp, part_path(upload.id))
            finish(upload)
    finally:
        part_tmp.unlink(missing_ok=True)
    return jsonify(upload_json(upload)), 202


@bp.post("/api/v1/uploads")
@require_user("write")
@doc("Start a resumable upload", "creators", status=201, response=ref("Upload"), body=NewUpload,
     errors={404: "no such model version of yours"})
def start_upload():
    data = parsed(NewUpload)
    with transaction():
        upload = new_upload(data.modelVersionId, data.filename, data.size, data.type)
    part_path(upload.id).touch()
    return jsonify(upload_json(upload)), 201


def my_upload(upload_id: str) -> Upload:
    upload = Upload.get_or_none(Upload.id == upload_id)
    user = current_api_user()
    if upload is None or (upload.user_id != user.id and not user.is_staff):
        error(404, f"No upload with id {upload_id}")
    return upload


@bp.get("/api/v1/uploads/<upload_id>")
@require_user("read")
@doc("State of an upload (offset to resume from, ingest progress, outcome)", "creators", response=ref("Upload"))
def get_upload(upload_id: str):
    return jsonify(upload_json(my_upload(upload_id)))


@bp.put("/api/v1/uploads/<upload_id>")
@body_limit(lambda s: s.max_upload_bytes)
@require_user("write")
@doc("Send the next chunk: header Content-Range: bytes START-END/TOTAL; START must equal offset", "creators",
     response=ref("Upload"), params=[param("Content-Range", where="header", required=True)],
     body={"required": True, "content": {"application/octet-stream": {"schema": BINARY}}},
     errors={409: "wrong offset, or the upload is no longer receiving (`offset` says where to resume)"})
def put_chunk(upload_id: str):
    """Body: the bytes; header Content-Range: bytes START-END/TOTAL. START must equal the current offset."""
    upload = my_upload(upload_id)
    if upload.state != "uploading":
        error(409, f"this upload is {upload.state}", offset=upload.received)
    match = RANGE.match(request.headers.get("Content-Range", "").strip())
    if not match:
        error(400, "send Content-Range: bytes START-END/TOTAL")
    start, end, total = map(int, match.groups())
    if total != upload.total_size or end < start or end >= total:
        error(400, f"Content-Range does not fit this upload of {upload.total_size} bytes")
    part = part_path(upload.id)
    with open(part, "r+b" if part.exists() else "w+b") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # one writer at a time
        upload = Upload.get_by_id(upload.id)
        if start != upload.received:
            error(409, f"expected a chunk starting at byte {upload.received}", offset=upload.received)
        out.seek(start)
        out.truncate()
        expected, written = end - start + 1, 0
        while written < expected and (chunk := request.stream.read(min(COPY_CHUNK, expected - written))):
            out.write(chunk)
            written += len(chunk)
        if written != expected or request.stream.read(1):
            out.truncate(start)
            error(400, f"the body must hold exactly {expected} bytes for this Content-Range", offset=start)
        out.flush()
        os.fsync(out.fileno())
        with transaction():
            upload.received, upload.updated_at = end + 1, utcnow()
            upload.save()
            if upload.received == upload.total_size:
                finish(upload)
    return jsonify(upload_json(upload))


@bp.delete("/api/v1/uploads/<upload_id>")
@require_user("write")
@doc("Cancel an unfinished upload", "creators", status=204, errors={409: "the upload is no longer receiving"})
def cancel_upload(upload_id: str):
    upload = my_upload(upload_id)
    if upload.state != "uploading":
        error(409, f"this upload is {upload.state} and can no longer be cancelled")
    part_path(upload.id).unlink(missing_ok=True)
    upload.delete_instance()
    return "", 204
