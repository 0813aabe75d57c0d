"""Builds the Dramatiq broker from settings. Import this before any actor module."""
from __future__ import annotations

import functools
import logging
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

import settings
from jobs.middleware import DbConnection, GpuHeartbeat, JobRegistry, Metrics
from jobs.redis_consumer import BatchingRedisBroker
from models_db.redis_store import redis_url

QUEUES = ("default", "index", "gpu")


def logs_result(fn):
    """For actors whose function returns a summary (a count...): the summary is logged, the actor
    returns None (there is no results backend). `actor.fn.__wrapped__` returns it, for tests."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        result = fn(*args, **kwargs)
        if result is not None:
            logging.getLogger(f"atelier.jobs.{fn.__name__}").info("%s: %s", fn.__name__, result)
    return run


class PermanentError(Exception):
    """Raised by an actor for input that will never work: the job fails at once, without retries."""


def one_line(exception: BaseException) -> str:
    """"Type: first line of its message", at most 300 characters."""
    name, lines = type(exception).__name__, str(exception).strip().splitlines()
    return (f"{name}: {lines[0]}" if lines else name)[:300]


class AtelierRetries(Retries):
    """Exponential-backoff retries, except for PermanentError (and an actor's own `throws`). The actor named
    by an actor's `on_retry_exhausted` gets (message dict, {}) once its message fails for good, PermanentError
    included; the message's options["last_error"] holds the last error in one line."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is not None:
            message.options["last_error"] = one_line(exception)
        if isinstance(exception, PermanentError):
            self.logger.info("Not retrying %r: %s", message.message_id, exception)
            message.fail()
            exhausted = broker.get_actor(message.actor_name).options.get("on_retry_exhausted")
            if exhausted:
                broker.get_actor(exhausted).send(message.asdict(), {})
            return
        try:
            super().after_process_message(broker, message, result=result, exception=exception)
        except (redis.ConnectionError, redis.TimeoutError):
            if message.failed:
                raise
            # Redis is away: the message would be acked once it is back, without its retry. Keep trying to
            # enqueue the retry first, as Dramatiq keeps trying to ack.
            while True:
                time.sleep(1)
                try:
                    broker.enqueue(message)
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    self.logger.warning("Retry of %r not enqueued yet: Redis is unavailable", message.message_id)


def build_broker() -> RedisBroker:
    s = settings.get()
    middleware = [
        AgeLimit(max_age=s.job_max_age_s * 1000),
        TimeLimit(time_limit=s.job_time_limit_s * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        AtelierRetries(max_retries=s.job_max_retries, min_backoff=1000, max_backoff=300_000),
        CurrentMessage(),
        DbConnection(),
        Metrics(),
        GpuHeartbeat(),
        JobRegistry(),  # last: its after-hooks run first
    ]
    broker = BatchingRedisBroker(url=redis_url(), namespace=s.queue_namespace, middleware=middleware,
                                 heartbeat_timeout=s.job_heartbeat_timeout_s * 1000,
                                 maintenance_chance=s.job_maintenance_chance)
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


broker = build_broker()
dramatiq.set_broker(broker)
