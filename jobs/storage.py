"""Blob store housekeeping."""
from __future__ import annotations

import time

import dramatiq
from peewee import chunked

from jobs.broker import logs_result
from models_db.blob_references import blobs_in_use
from models_db.storage import get_store

GRACE_S = 24 * 3600  # younger blobs may belong to an upload whose row is not written yet


def orphan_blobs(grace_s: float = GRACE_S) -> list[str]:
    store = get_store()
    cutoff = time.time() - grace_s
    candidates = [sha for sha, modified in store.iter_blobs() if modified < cutoff]
    used = blobs_in_use(candidates)
    return [sha for sha in candidates if sha not in used]


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=6 * 3600 * 1000)
@logs_result
def remove_orphan_blobs(grace_s: float = GRACE_S) -> int:
    """Deletes blobs that no row names any more (e.g. left by a crash between storing and recording)."""
    store = get_store()
    orphans = orphan_blobs(grace_s)
    for sha in orphans:
        store.delete(sha)
    return len(orphans)


@dramatiq.actor(queue_name="default", max_retries=5)
@logs_result
def remove_unused_blobs(blobs: list[str]) -> int:
    """Deletes those of blobs that no row names any more (after the rows that named them were deleted)."""
    store = get_store()
    unused = set(blobs) - blobs_in_use(blobs)
    for sha in unused:
        store.delete(sha)
    return len(unused)


def remove_unused_later(blobs) -> None:
    """After commit: remove_unused_blobs over blobs, in messages of a bounded size."""
    for chunk in chunked(sorted(blobs), 1000):
        remove_unused_blobs.send(chunk)
