"""Dramatiq middleware of our own: DB connections, metrics, message-level idempotency, in-flight registry."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time

import dramatiq
from dramatiq.middleware import SkipMessage

from models_db import db as database
from models_db.redis_store import redis_key

PROCESSED_TTL_S = 7 * 24 * 3600  # how long the inbox keeps a processed message id


class DbConnection(dramatiq.Middleware):
    """Each message that uses the database gets a connection from the pool on its first query (peewee's
    autoconnect), handed back afterwards; a broken connection is discarded so the retry gets a fresh one."""

    def before_worker_boot(self, broker, worker):
        database.init()

    def before_process_message(self, broker, message):
        database.init()

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


class _InFlight:
    """This process's running messages. Once a second a thread writes those that have run for a while to
    the shared registry and removes the ones that have finished since, so a short job costs no Redis
    command (the reaper looks for jobs past their time limit, the `atelier jobs` view for running ones)."""

    TICK_S = 1.0

    def __init__(self):
        self.lock = threading.Lock()
        self.running: dict[str, dict] = {}  # redis id -> entry
        self.written: set[str] = set()  # in the registry, running
        self.finished: list[str] = []  # in the registry, finished
        self.stop = threading.Event()

    def start(self, redis_id: str, entry: tuple) -> None:
        """entry: (queue, actor, started, worker); the registry's JSON is built for the few written."""
        with self.lock:
            self.running[redis_id] = entry

    def end(self, redis_id: str) -> None:
        with self.lock:
            self.running.pop(redis_id, None)
            if redis_id in self.written:
                self.written.discard(redis_id)
                self.finished.append(redis_id)

    def run(self) -> None:
        while not self.stop.wait(self.TICK_S):
            self.sync()

    def sync(self) -> None:
        now = time.time()
        with self.lock:
            new = {i: e for i, e in self.running.items() if i not in self.written and now - e[2] >= self.TICK_S}
            self.written.update(new)
            finished, self.finished = self.finished, []
        if not new and not finished:
            return
        pipe = _redis().pipeline(transaction=False)
        pid = os.getpid()
        for redis_id, (queue, actor, started, worker) in new.items():
            pipe.hset(inflight_key(), redis_id, json.dumps(
                {"queue": queue, "actor": actor, "started": started, "worker": worker, "pid": pid}))
        if finished:
            pipe.hdel(inflight_key(), *finished)
        try:
            pipe.execute()
        except Exception as e:  # noqa: BLE001  (the next tick tries again)
            logging.getLogger(__name__).warning("in-flight registry not written: %s", e)
            with self.lock:
                self.written.difference_update(new)
                self.finished.extend(finished)


class JobRegistry(dramatiq.Middleware):
    """No Redis round trip of its own per message:
    - idempotency: a message is done when it is acked. A worker that dies after the actor returned but
      before the ack gets its message redelivered and run again; for an actor declared
      done_on_commit=True, the actor's own transaction() also records the message id (the inbox,
      models_db.messages), so that "done" commits atomically with its effect and such a redelivery is
      skipped. Its effect must be that one transaction: work after the commit (on_commit hooks, Redis
      writes) is not redone for a worker killed right after it;
    - which messages run where and since when (read by the stale-job reaper; see _InFlight);
    - the error of each dead-lettered message (shown by `atelier jobs failed`).
    Keep it last in the middleware list: its after-hooks then run first."""

    actor_options = {"done_on_commit"}
    DONE = "atelier_done"  # set on a processed message object: enqueued again as it is, it is skipped

    def __init__(self):
        self.inflight = _InFlight()
        self.done_on_commit: dict[str, bool] = {}  # actor name -> its done_on_commit option

    @staticmethod
    def redis_id(message, options: dict | None = None) -> str:
        """The id the Redis broker files a delivery under (options: message.options, if already at hand)."""
        return (options or message.options).get("redis_message_id") or message.message_id

    def after_worker_boot(self, broker, worker):
        self.inflight.stop.clear()
        threading.Thread(target=self.inflight.run, name="inflight-registry", daemon=True).start()

    def after_worker_shutdown(self, broker, worker):
        self.inflight.stop.set()
        self.inflight.sync()  # its jobs have ended: none left in the registry

    def before_process_message(self, broker, message):
        options = message.options
        if options.get(self.DONE):
            raise SkipMessage(f"{message.message_id} already done")
        actor = message.actor_name
        self.inflight.start(self.redis_id(message, options), (message.queue_name, actor, time.time(), broker.broker_id))
        done_on_commit = self.done_on_commit.get(actor)
        if done_on_commit is None:
            done_on_commit = self.done_on_commit[actor] = bool(broker.get_actor(actor).options.get("done_on_commit"))
        if done_on_commit:
            from models_db.messages import is_processed
            if is_processed(message.message_id):
                raise SkipMessage(f"{message.message_id} already committed")
            database.done_on_commit(message.message_id)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        database.done_on_commit(None)
        options = message.options
        self.inflight.end(self.redis_id(message, options))
        if exception is None:
            options[self.DONE] = True
        else:
            message.atelier_error = f"{type(exception).__name__}: {exception}"[:2000]  # kept if dead-lettered

    def after_skip_message(self, broker, message):
        database.done_on_commit(None)
        self.inflight.end(self.redis_id(message))

    def after_nack(self, broker, message):
        error = getattr(message, "atelier_error", None)
        if error:
            _redis().hset(errors_key(), self.redis_id(message), error)


class Metrics(dramatiq.Middleware):
    """Per-actor counters and durations into the shared Prometheus registry, through the process's
    metrics buffer (metrics.buffer): a message adds to in-process tallies, a thread started at worker boot
    writes them a few times a second, and worker shutdown and process exit write the rest. Each labelled
    series is looked up once: labels() takes a lock and checks the label values on every call."""

    def __init__(self):
        from metrics.buffer import buffer
        self.buffer = buffer
        self.started = threading.local()
        self.series: dict = {}
        self.gpu_samplers: dict = {}  # id(worker) -> its GPU sampler, for each gpu worker booted here

    @staticmethod
    def _m():
        from metrics import definitions
        return definitions

    def _series(self, metric: str, *labels):
        series = self.series.get((metric, labels))
        if series is None:
            series = self.series[(metric, labels)] = getattr(self._m(), metric).labels(*labels)
        return series

    def _count(self, message, outcome: str) -> None:
        self.buffer.inc(self._series("job_messages", message.actor_name, message.queue_name, outcome))

    def before_process_message(self, broker, message):
        self._count(message, "started")
        if message.options.get("retries"):
            self._count(message, "retried")
        self.buffer.observe(self._series("job_queue_wait", message.actor_name),
                            max(0.0, time.time() - message.message_timestamp / 1000))
        self.started.at = time.perf_counter()

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._count(message, "failed" if exception is not None else "succeeded")
        started = getattr(self.started, "at", None)
        if started is not None:
            self.buffer.observe(self._series("job_duration", message.actor_name), time.perf_counter() - started)

    def after_skip_message(self, broker, message):
        self._count(message, "skipped")

    def after_nack(self, broker, message):
        self._count(message, "dead")

    def after_worker_boot(self, broker, worker):
        import atexit

        import metrics
        atexit.register(metrics.process_exited, os.getpid())  # its live gauges go with the process
        self.buffer.start()
        if is_gpu_worker(worker):
            from metrics import gpu
            self._m().gpu_workers.inc()
            self.gpu_samplers[id(worker)] = gpu.start_sampler()

    def after_worker_shutdown(self, broker, worker):
        self.buffer.stop()  # writes what this worker counted
        if id(worker) in self.gpu_samplers:  # this worker's own boot counted it (one process may run several)
            self._m().gpu_workers.dec()
            sampler = self.gpu_samplers.pop(id(worker))
            if sampler is not None:
                sampler.set()


def is_gpu_worker(worker) -> bool:
    return "gpu" in (worker.consumer_whitelist or ())


class GpuHeartbeat(dramatiq.Middleware):
    """A worker on the gpu queue publishes its heartbeat (jobs.gpu_workers) while it runs."""

    def __init__(self):
        self.beating: set[int] = set()  # ids of the gpu workers booted in this process

    def after_worker_boot(self, broker, worker):
        if is_gpu_worker(worker):
            self.beating.add(id(worker))
            from jobs.gpu_workers import heartbeat
            heartbeat.start()

    def after_worker_shutdown(self, broker, worker):
        if id(worker) in self.beating:
            self.beating.discard(id(worker))
            from jobs.gpu_workers import heartbeat
            heartbeat.stop()
