"""Blob store housekeeping."""
from __future__ import annotations

import time

import dramatiq
from peewee import chunked

from jobs.broker import logs_result
from models_db.storage import BLOB_REFERENCES, get_store

GRACE_S = 24 * 3600  # younger blobs may belong to an upload whose row is not written yet


def orphan_blobs(grace_s: float = GRACE_S) -> list[str]:
    store = get_store()
    cutoff = time.time() - grace_s
    candidates = [sha for sha, modified in store.iter_blobs() if modified < cutoff]
    orphans = []
    for chunk in chunked(candidates, 500):
        used = set()
        for model, field in BLOB_REFERENCES:
            used.update(v for (v,) in model.select(field).where(field.in_(chunk)).tuples())
        orphans.extend(sha for sha in chunk if sha not in used)
    return orphans


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=6 * 3600 * 1000)
@logs_result
def remove_orphan_blobs(grace_s: float = GRACE_S) -> int:
    """Deletes blobs that no row names any more (e.g. left by a crash between storing and recording)."""
    store = get_store()
    orphans = orphan_blobs(grace_s)
    for sha in orphans:
        store.delete(sha)
    return len(orphans)
