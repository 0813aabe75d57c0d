"""Turning a received upload into a stored, ingested model file; clearing abandoned uploads."""
from __future__ import annotations

from datetime import timedelta

import dramatiq

import settings
from jobs.broker import logs_result
from jobs.ingest import ingest_file, reject, tell_owner
from models_db.catalog import ModelFile
from models_db.db import transaction, utcnow
from models_db.storage import get_store, holding
from models_db.uploads import Upload, part_path


@dramatiq.actor(queue_name="default", time_limit=6 * 3600 * 1000, on_retry_exhausted="upload_failed")
def store_upload(upload_id: str) -> None:
    """Moves the received bytes into the blob store, creates the file row and queues its ingest.
    Idempotent: an upload that is no longer being processed, or already has its file, is skipped."""
    upload = Upload.get_or_none(Upload.id == upload_id)
    if upload is None or upload.state != "processing" or upload.file_id is not None:
        return
    part = part_path(upload.id)
    if not part.exists():
        Upload.update(state="rejected", error="the received bytes were lost; upload again").where(
            Upload.id == upload.id).execute()
        return
    with holding():  # the blob's pending mark goes once the row names it, before the ingest may reject it
        sha256, size = get_store().put_path(part)
        with transaction():
            file = ModelFile.create(version=upload.version_id, name=upload.filename, type=upload.file_type,
                                    blob=sha256, size_bytes=size)
            upload.file, upload.updated_at = file, utcnow()
            upload.save()
    ingest_file.send(file.id)
    part.unlink(missing_ok=True)


@dramatiq.actor(queue_name="default")
def upload_failed(message: dict, _retries: dict) -> None:
    """store_upload or ingest_file failed for good (retries spent, or a permanent error): the upload is
    rejected with the error's first line, its bytes removed and its owner told, instead of staying
    'processing'. Idempotent: only a file still Pending, or an upload still processing without one, changes."""
    reason = "processing failed: " + message["options"].get("last_error", "unknown error")
    if message["actor_name"] == "ingest_file":
        file = ModelFile.get_or_none(ModelFile.id == message["args"][0])
        if file is not None and file.status == "Pending":
            reject(file, reason)
        return
    upload = Upload.get_or_none(Upload.id == message["args"][0])
    if upload is None or upload.state != "processing" or upload.file_id is not None:
        return
    part_path(upload.id).unlink(missing_ok=True)  # bytes stored but not yet named by a file: the orphan sweep's
    with transaction():
        if Upload.update(state="rejected", error=reason, updated_at=utcnow()).where(
                Upload.id == upload.id, Upload.state == "processing", Upload.file.is_null()).execute():
            tell_owner(upload.user_id, "file-rejected", f"{upload.filename} was rejected: {reason}",
                       f"upload-rejected:{upload.id}")


@dramatiq.actor(queue_name="default", max_retries=3)
@logs_result
def expire_uploads() -> int:
    """Removes resumable uploads left unfinished for longer than UPLOAD_EXPIRY_HOURS."""
    cutoff = utcnow() - timedelta(hours=settings.get().upload_expiry_hours)
    stale = list(Upload.select().where(Upload.state == "uploading", Upload.updated_at < cutoff))
    for upload in stale:
        part_path(upload.id).unlink(missing_ok=True)
        Upload.update(state="rejected", error="expired before it was finished").where(
            Upload.id == upload.id, Upload.state == "uploading").execute()
    return len(stale)
