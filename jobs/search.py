"""Index sync: flush the pending set in batches (after writes, and every few seconds by the scheduler)."""
from __future__ import annotations

import dramatiq

from jobs.broker import logs_result
from models_db import search
from models_db.redis_store import client, redis_key
from models_db.search import sync

BATCH = 500


@dramatiq.actor(queue_name="index", max_retries=20, min_backoff=500, max_backoff=60_000, time_limit=30 * 60 * 1000)
@logs_result
def flush_search_index(max_batches: int = 20) -> int:
    """Indexes pending models batch by batch; ids stay pending until their batch is in the index,
    so a failed flush is retried with nothing lost."""
    client().delete(redis_key("search:flush-queued"))  # marks from now on queue another flush
    done = 0
    for _ in range(max_batches):
        batch = sync.take(BATCH)
        if not batch:
            break
        search.index_models([model_id for model_id, _ in batch])
        sync.done(batch)
        done += len(batch)
    if sync.pending_count():
        flush_search_index.send(max_batches)
    return done


def flush_soon(ids) -> None:
    """After a write: one flush message per second at most, however many writes."""
    if client().set(redis_key("search:flush-queued"), 1, nx=True, px=1000):
        flush_search_index.send_with_options(delay=200)


sync.listeners.append(flush_soon)
