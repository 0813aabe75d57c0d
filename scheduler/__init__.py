"""The schedule table. Every entry only enqueues an actor; the work happens in the workers."""
from __future__ import annotations

import logging

from apscheduler.schedulers.blocking import BlockingScheduler

log = logging.getLogger("atelier.scheduler")


def schedule_table() -> list[tuple]:
    """(actor, trigger, trigger arguments)"""
    from jobs.uploads import expire_uploads
    return [
        (expire_uploads, "interval", {"hours": 1}),
    ]


def build(scheduler=None):
    import jobs  # noqa: F401  (broker first)
    scheduler = scheduler or BlockingScheduler(timezone="UTC")
    for actor, trigger, args in schedule_table():
        scheduler.add_job(actor.send, trigger, id=actor.actor_name, name=actor.actor_name,
                          coalesce=True, max_instances=1, replace_existing=True, **args)
    return scheduler


def run() -> None:
    import settings
    logging.basicConfig(level=settings.get().log_level)
    scheduler = build()
    for job in scheduler.get_jobs():
        log.info("scheduled %s: %s", job.name, job.trigger)
    scheduler.start()
