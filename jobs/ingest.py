"""Ingest of a stored model file: hashes, format checks, pickle scan, architecture."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import dramatiq

from gpu.checkpoints import InvalidModelFile, inspect_file
from metrics import definitions as m
from models_db.blob_references import delete_blob_if_unused
from models_db.catalog import ModelFile, ModelFileHash, ModelVersion
from models_db.db import on_commit, transaction, utcnow
from models_db.hashing import hash_file
from models_db.storage import get_store
from models_db.uploads import Upload

COPIED_FIELDS = ("format", "fp", "size_kind", "architecture", "pickle_scan_result", "pickle_scan_message",
                 "virus_scan_result", "virus_scan_message", "info_json")


@dataclass
class Outcome:
    status: str  # Ready | Danger | Rejected | Skipped
    message: str = ""


@dramatiq.actor(queue_name="default", time_limit=6 * 3600 * 1000, on_retry_exhausted="upload_failed")
def ingest_file(file_id: int) -> None:
    ingest(file_id)


def ingest(file_id: int, progress=None) -> Outcome:
    """Idempotent: a file that is no longer Pending is left as it is."""
    outcome = _ingest(file_id, progress)
    m.ingest_files.labels(outcome.status).inc()
    return outcome


def _ingest(file_id: int, progress) -> Outcome:
    file = ModelFile.get_or_none(ModelFile.id == file_id)
    if file is None or file.status != "Pending":
        return Outcome("Skipped", "already ingested" if file else "no such file")
    model_type = file.version.model.type
    twin = (ModelFile.select().where(ModelFile.blob == file.blob, ModelFile.status != "Pending",
                                     ModelFile.id != file.id).first())
    store = get_store()
    if not store.exists(file.blob):
        return reject(file, "the uploaded bytes are missing from storage")
    if twin is not None:  # same bytes already ingested: reuse the results
        hashes = {h.type: h.hash for h in twin.hashes}
        fields = {name: getattr(twin, name) for name in COPIED_FIELDS}
    else:
        with store.local_path(file.blob) as path:
            hashes = hash_file(path, progress or _upload_progress(file.id))
            m.ingest_bytes.inc(file.size_bytes)
            if hashes["SHA256"].lower() != file.blob:
                return reject(file, "stored bytes do not match their SHA256")
            try:
                info, (scan, scan_message) = inspect_file(path, file.name, model_type)
            except InvalidModelFile as exc:
                return reject(file, str(exc))
        fields = {"format": info.format, "fp": info.fp, "size_kind": info.size_kind,
                  "architecture": info.architecture, "pickle_scan_result": scan,
                  "pickle_scan_message": scan_message, "virus_scan_result": "Pending",
                  "virus_scan_message": "not scanned: no virus scanner is configured",
                  "info_json": json.dumps(info.details)}
    return accept(file, hashes, fields)


def accept(file: ModelFile, hashes: dict, fields: dict) -> Outcome:
    danger = fields["pickle_scan_result"] == "Danger"
    with transaction():
        for name, value in fields.items():
            setattr(file, name, value)
        file.status, file.scanned_at = ("Danger" if danger else "Ready"), utcnow()
        if not danger and file.type == "Model" and not ModelFile.select().where(
                ModelFile.version == file.version_id, ModelFile.primary == True).exists():  # noqa: E712
            file.primary = True
        file.save()
        ModelFileHash.insert_many([{"file": file.id, "type": t, "hash": h} for t, h in hashes.items()]
                                  ).on_conflict_ignore().execute()
        ModelVersion.update(updated_at=utcnow()).where(ModelVersion.id == file.version_id).execute()
        Upload.update(state="done", processed=file.size_bytes, updated_at=utcnow()).where(
            Upload.file == file.id).execute()
        if danger:
            _tell_owner(file, "file-danger", f"{file.name} was refused: {fields['pickle_scan_message']}. "
                        "It stays listed as Danger and is never offered for download.")
    return Outcome("Danger" if danger else "Ready", fields["pickle_scan_message"] or "")


def reject(file: ModelFile, reason: str) -> Outcome:
    """Removes every trace of a file that cannot be accepted; the upload keeps the reason, the owner is told."""
    blob, name = file.blob, file.name
    with transaction():
        Upload.update(state="rejected", error=reason, file=None, updated_at=utcnow()).where(
            Upload.file == file.id).execute()
        _tell_owner(file, "file-rejected", f"{name} was rejected: {reason}")
        file.delete_instance()
        on_commit(lambda: delete_blob_if_unused(blob))
    return Outcome("Rejected", reason)


def _tell_owner(file: ModelFile, kind: str, message: str) -> None:
    tell_owner(file.version.model.owner_id, kind, message, f"{kind}:{file.id}")


def tell_owner(user_id: int, kind: str, message: str, key: str) -> None:
    """A notification once the transaction commits (key: one per event, a retry does not repeat it)."""
    from jobs.notifications import notify
    on_commit(lambda: notify.send(user_id, kind, message, key))


def _upload_progress(file_id: int):
    """Records hashing progress on the file's upload at most once a second."""
    state = {"done": 0, "saved": 0.0}

    def progress(n: int) -> None:
        state["done"] += n
        if time.monotonic() - state["saved"] >= 1:
            state["saved"] = time.monotonic()
            Upload.update(processed=state["done"]).where(Upload.file == file_id).execute()
    return progress
