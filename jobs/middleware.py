"""Dramatiq middleware of our own: DB connections, metrics, message-level idempotency, in-flight registry."""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import dramatiq
from dramatiq.middleware import SkipMessage

from models_db import db as database
from models_db.redis_store import redis_key

DONE_TTL_S = 7 * 24 * 3600


class DbConnection(dramatiq.Middleware):
    """Each message runs with a database connection from the pool, handed back afterwards; a broken
    connection is discarded so the retry gets a fresh one."""

    def before_worker_boot(self, broker, worker):
        database.init()

    def before_process_message(self, broker, message):
        database.init()
        database.db.connect(reuse_if_open=True)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if database.db.is_closed():
            return
        if exception is not None and database.db.in_transaction():
            with contextlib.suppress(Exception):  # the connection may be the thing that broke
                database.db.rollback()
        database.db.close()  # the pool keeps a healthy connection and drops a broken one

    after_skip_message = after_process_message


def inflight_key() -> str:
    return redis_key("inflight")


def errors_key() -> str:
    return redis_key("job-errors")


def _redis():
    from models_db.redis_store import client
    return client()


class JobRegistry(dramatiq.Middleware):
    """Per message, in one Redis round trip before and one after:
    - idempotency: a message that already succeeded is skipped if delivered again (a worker that died
      after finishing but before acking gets its message redelivered); the marker goes once acked;
    - which messages run where and since when (read by the stale-job reaper);
    - the last error of each message (shown by `atelier jobs failed`).
    Keep it last in the middleware list: its after-hooks then run first, so the marker is written
    as soon as the actor returns."""

    @staticmethod
    def done_key(message) -> str:
        return redis_key(f"done:{message.message_id}")

    @staticmethod
    def redis_id(message) -> str:
        """The id the Redis broker files a delivery under."""
        return message.options.get("redis_message_id", message.message_id)

    def before_process_message(self, broker, message):
        pipe = _redis().pipeline(transaction=False)
        pipe.exists(self.done_key(message))
        pipe.hset(inflight_key(), self.redis_id(message), json.dumps({
            "queue": message.queue_name, "actor": message.actor_name, "started": time.time(),
            "worker": broker.broker_id, "pid": os.getpid()}))
        already_done, _ = pipe.execute()
        if already_done:
            raise SkipMessage(f"{message.message_id} already done")

    def after_process_message(self, broker, message, *, result=None, exception=None):
        pipe = _redis().pipeline(transaction=False)
        if exception is None:
            pipe.set(self.done_key(message), 1, ex=DONE_TTL_S)
            pipe.hdel(errors_key(), self.redis_id(message))
        else:
            pipe.hset(errors_key(), self.redis_id(message), f"{type(exception).__name__}: {exception}"[:2000])
        pipe.hdel(inflight_key(), self.redis_id(message))
        pipe.execute()

    def after_skip_message(self, broker, message):
        _redis().hdel(inflight_key(), self.redis_id(message))

    def after_ack(self, broker, message):
        _redis().delete(self.done_key(message))  # acked: nothing can redeliver it any more


class Metrics(dramatiq.Middleware):
    """Per-actor counters and durations into the shared Prometheus registry."""

    def __init__(self):
        self.started = threading.local()

    @staticmethod
    def _m():
        from metrics import definitions
        return definitions

    def before_process_message(self, broker, message):
        m = self._m()
        m.job_messages.labels(message.actor_name, message.queue_name, "started").inc()
        if message.options.get("retries"):
            m.job_messages.labels(message.actor_name, message.queue_name, "retried").inc()
        m.job_queue_wait.labels(message.actor_name).observe(max(0.0, time.time() - message.message_timestamp / 1000))
        self.started.at = time.perf_counter()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        m = self._m()
        outcome = "failed" if exception is not None else "succeeded"
        m.job_messages.labels(message.actor_name, message.queue_name, outcome).inc()
        started = getattr(self.started, "at", None)
        if started is not None:
            m.job_duration.labels(message.actor_name).observe(time.perf_counter() - started)

    def after_skip_message(self, broker, message):
        self._m().job_messages.labels(message.actor_name, message.queue_name, "skipped").inc()

    def after_nack(self, broker, message):
        self._m().job_messages.labels(message.actor_name, message.queue_name, "dead").inc()

    def after_worker_boot(self, broker, worker):
        import atexit

        import metrics
        atexit.register(metrics.process_exited, os.getpid())  # its live gauges go with the process
        self.gpu_worker = "gpu" in (worker.consumer_whitelist or ())
        if self.gpu_worker:
            from metrics import gpu
            self._m().gpu_workers.inc()
            self.gpu_sampler = gpu.start_sampler()

    def after_worker_shutdown(self, broker, worker):
        if getattr(self, "gpu_worker", False):
            self._m().gpu_workers.dec()
            if self.gpu_sampler is not None:
                self.gpu_sampler.set()
