"""What is in the queues: depths, in-flight and dead-lettered messages (read straight from Redis, in the
key layout of Dramatiq's RedisBroker), and the operator's actions on failed jobs."""
from __future__ import annotations

import json
import time

import dramatiq
from dramatiq import Message

from jobs.broker import broker, logs_result
from models_db.redis_store import client


def _key(*parts: str) -> str:
    return ":".join((broker.namespace, *parts))


def inflight_keys(queue: str) -> list[bytes]:
    return list(client().scan_iter(match=_key(f"__acks__.*.{queue}"), count=500))


def queue_stats() -> dict[str, dict[str, int]]:
    """Per declared queue: ready, delayed, in_flight, dead."""
    r = client()
    out = {}
    for queue in sorted(q for q in broker.get_declared_queues() if not q.endswith(".DQ")):
        pipe = r.pipeline()
        pipe.llen(_key(queue))
        pipe.llen(_key(f"{queue}.DQ"))
        pipe.zcard(_key(f"{queue}.XQ"))
        for key in inflight_keys(queue) + inflight_keys(f"{queue}.DQ"):
            pipe.scard(key)
        ready, delayed_queued, dead, *inflight = pipe.execute()
        out[queue] = {"ready": ready, "delayed": delayed_queued, "in_flight": sum(inflight), "dead": dead}
    return out


def failed(queue: str | None = None) -> list[dict]:
    """Dead-lettered messages, newest first. `id` is the broker's id of the delivery."""
    from jobs.middleware import errors_key
    r = client()
    out = []
    for q in ([queue] if queue else sorted(broker.get_declared_queues())):
        for redis_id, failed_at in r.zrevrange(_key(f"{q}.XQ"), 0, -1, withscores=True):
            raw = r.hget(_key(f"{q}.XQ.msgs"), redis_id)
            if raw is None:
                continue
            message = Message.decode(raw)
            error = r.hget(errors_key(), redis_id)
            out.append({"id": redis_id.decode(), "messageId": message.message_id, "queue": q,
                        "actor": message.actor_name, "args": list(message.args), "kwargs": message.kwargs,
                        "failedAt": failed_at / 1000, "error": error.decode() if error else ""})
    return out


def _job_of(item: dict) -> int | None:
    """The generation job a dead message was for."""
    return item["args"][0] if item["actor"] == "generate" and item["args"] else None


def failed_by_run(queue: str | None = None) -> list[dict]:
    """The failed list as operators read it: the dead `generate` messages of one run are one entry (its
    newest, with `run` and `count`), so that a run of 1000 failed images does not bury everything else."""
    from models_db.generation import runs_of_jobs
    items = failed(queue)
    runs = runs_of_jobs([job for job in map(_job_of, items) if job is not None])
    out, groups = [], {}
    for item in items:
        run = runs.get(_job_of(item))
        if run is None:
            out.append(item)
        elif run in groups:
            groups[run]["count"] += 1
        else:
            groups[run] = {**item, "run": run, "count": 1}
            out.append(groups[run])
    return out


def find_failed(message_id: str) -> tuple[str, Message] | None:
    r = client()
    for q in sorted(broker.get_declared_queues()):
        raw = r.hget(_key(f"{q}.XQ.msgs"), message_id)
        if raw is not None:
            return q, Message.decode(raw)
    return None


def _drop_failed(queue: str, redis_id: str) -> None:
    from jobs.middleware import errors_key
    r = client()
    r.zrem(_key(f"{queue}.XQ"), redis_id)
    r.hdel(_key(f"{queue}.XQ.msgs"), redis_id)
    r.hdel(errors_key(), redis_id)


def retry_failed(message_id: str) -> str | None:
    """Sends a dead-lettered message again, with a fresh retry budget: "sent"; "settled" when its work is no
    longer to do (it is only dropped from the list); None when it is not in the list."""
    found = find_failed(message_id)
    if found is None:
        return None
    queue, message = found
    if not reopen(message):
        _drop_failed(queue, message_id)
        return "settled"
    options = {k: v for k, v in message.options.items()
               if k not in ("retries", "traceback", "eta", "redis_message_id")}
    broker.enqueue(message.copy(queue_name=queue.removesuffix(".DQ"), options=options))
    _drop_failed(queue, message_id)
    return "sent"


def retry_failed_run(run_id: int) -> int:
    """Retries every dead `generate` message of the run; returns how many were sent."""
    from models_db.generation import runs_of_jobs
    items = [item for item in failed() if _job_of(item) is not None]
    runs = runs_of_jobs([_job_of(item) for item in items])
    return sum(retry_failed(item["id"]) == "sent" for item in items if runs.get(_job_of(item)) == run_id)


def reopen(message: Message) -> bool:
    """Puts what a dead message was about back in a state to be worked on; False when there is nothing left
    to do. A generation job fails for good in the database, so its retry first queues the job again."""
    if message.actor_name == "generate":
        from jobs.generation import requeue_failed
        return requeue_failed(*message.args)
    return True


def purge_failed(queue: str | None = None) -> int:
    items = failed(queue)
    for item in items:
        _drop_failed(item["queue"], item["id"])
    return len(items)


def describe(message: Message) -> str:
    return json.dumps({"id": message.message_id, "queue": message.queue_name, "actor": message.actor_name,
                       "args": list(message.args), "kwargs": message.kwargs,
                       "enqueuedAt": message.message_timestamp / 1000, "options": message.options,
                       "now": time.time()}, indent=2, default=str)


class QueueCollector:
    """Prometheus collector: queue depths at scrape time."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily
        family = GaugeMetricFamily("atelier_queue_messages", "Messages per queue and state", labels=["queue", "state"])
        try:
            stats = queue_stats()
        except Exception:  # Redis down: /metrics still answers, healthz says why
            stats = {}
        for queue, states in stats.items():
            for state, value in states.items():
                family.add_metric([queue, state], value)
        yield family


# Puts a message back on its queue if it is still in the given worker's in-flight set.
_REQUEUE = """
if redis.call('srem', KEYS[1], ARGV[1]) == 1 then
    if redis.call('hexists', KEYS[3], ARGV[1]) == 1 then
        redis.call('rpush', KEYS[2], ARGV[1])
        return 1
    end
end
return 0
"""
GRACE_S = 60


def stale_jobs(now: float | None = None) -> list[dict]:
    """In-flight messages that have run longer than their actor's time limit plus a grace period."""
    from jobs.middleware import inflight_key
    now = time.time() if now is None else now
    out = []
    for message_id, raw in client().hgetall(inflight_key()).items():
        entry = json.loads(raw)
        try:
            limit_ms = broker.get_actor(entry["actor"]).options.get("time_limit")
        except Exception:  # an actor this process does not know
            limit_ms = None
        limit_s = (limit_ms or _default_time_limit_ms()) / 1000
        if now - entry["started"] > limit_s + GRACE_S:
            out.append({"id": message_id.decode(), **entry})
    return out


def _default_time_limit_ms() -> int:
    from dramatiq.middleware import TimeLimit
    for middleware in broker.middleware:
        if isinstance(middleware, TimeLimit):
            return middleware.time_limit
    return 600_000


@dramatiq.actor(queue_name="default", max_retries=0, time_limit=5 * 60 * 1000)
@logs_result
def reap_stale_jobs() -> int:
    """Requeues jobs stuck in flight past their time limit (a hung worker that still heartbeats);
    jobs of dead workers are requeued by the broker's own maintenance. Also forgets the inbox's old
    processed-message ids."""
    from jobs.middleware import PROCESSED_TTL_S, inflight_key
    from models_db.messages import prune
    r = client()
    requeue = r.register_script(_REQUEUE)
    reaped = 0
    for job in stale_jobs():
        keys = [_key(f"__acks__.{job['worker']}.{job['queue']}"), _key(job["queue"]), _key(f"{job['queue']}.msgs")]
        reaped += requeue(keys=keys, args=[job["id"]])
        r.hdel(inflight_key(), job["id"])
    prune(PROCESSED_TTL_S)
    return reaped


def actor_totals() -> dict:
    """Totals of the per-actor counters, summed over every process of this host."""
    from prometheus_client import CollectorRegistry, multiprocess

    import metrics
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics.MULTIPROC_DIR)
    out: dict = {}
    for family in registry.collect():
        if family.name == "atelier_job_messages":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    slot = out.setdefault(sample.labels["actor"], {})
                    slot[sample.labels["outcome"]] = slot.get(sample.labels["outcome"], 0) + sample.value
    return out
