"""The schedule table. Every entry only enqueues an actor; the work happens in the workers.

Ticks are aligned to the epoch, so every running scheduler computes the same tick number, and a Redis
key per (entry, tick) set with NX lets exactly one of them send it: run as many schedulers as you like."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger("atelier.scheduler")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    actor: object  # a dramatiq actor
    seconds: int


def schedule_table() -> list[Entry]:
    from jobs import accounts, generation, images, leaderboards, queues, search, stats, storage, uploads
    return [
        Entry(search.flush_search_index, 5),
        Entry(images.score_unscored_images, 600),
        Entry(queues.reap_stale_jobs, 60),
        Entry(generation.reap_generation, 60),
        Entry(stats.rollup_stats, 300),  # period rows; aggregates the all-time download and rating counts
        Entry(leaderboards.refresh_leaderboards, 900),
        Entry(leaderboards.refresh_popular_tags, 300),
        Entry(uploads.expire_uploads, 3600),
        Entry(accounts.expire_login_sessions, 3600),
        Entry(storage.remove_orphan_blobs, 6 * 3600),
    ]


def fire(entry: Entry, now: float | None = None) -> bool:
    """Sends the entry's message unless another scheduler already sent this tick."""
    from metrics import definitions as m
    from models_db.redis_store import client, redis_key
    now = time.time() if now is None else now
    tick = int(now // entry.seconds)
    key = redis_key(f"scheduler:{entry.actor.actor_name}:{tick}")
    if not client().set(key, os.getpid(), nx=True, ex=max(2 * entry.seconds, 60)):
        return False
    entry.actor.send()
    m.scheduler_last_tick.labels(entry.actor.actor_name).set(now)
    return True


def build(scheduler=None, table: list[Entry] | None = None):
    import jobs  # noqa: F401  (broker first)
    scheduler = scheduler or BlockingScheduler(timezone="UTC")
    for entry in table if table is not None else schedule_table():
        scheduler.add_job(fire, IntervalTrigger(seconds=entry.seconds, start_date=EPOCH), args=[entry],
                          id=entry.actor.actor_name, name=entry.actor.actor_name, coalesce=True,
                          max_instances=1, replace_existing=True, misfire_grace_time=max(1, entry.seconds // 2))
    return scheduler


def run() -> None:
    import settings
    logging.basicConfig(level=settings.get().log_level)
    scheduler = build()
    for job in scheduler.get_jobs():
        log.info("scheduled %s: %s", job.name, job.trigger)
    scheduler.start()
