"""What is in the queues: depths, in-flight and dead-lettered messages (read straight from Redis, in the
key layout of Dramatiq's RedisBroker), and the operator's actions on failed jobs."""
from __future__ import annotations

import json
import time

from dramatiq import Message

from jobs.broker import broker
from jobs.redis_server import client


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
    """Dead-lettered messages, newest first."""
    r = client()
    out = []
    for q in ([queue] if queue else sorted(broker.get_declared_queues())):
        for message_id, failed_at in r.zrevrange(_key(f"{q}.XQ"), 0, -1, withscores=True):
            raw = r.hget(_key(f"{q}.XQ.msgs"), message_id)
            if raw is None:
                continue
            message = Message.decode(raw)
            out.append({"id": message.message_id, "queue": q, "actor": message.actor_name,
                        "args": list(message.args), "kwargs": message.kwargs, "failedAt": failed_at / 1000,
                        "retries": message.options.get("retries", 0),
                        "error": last_line(message.options.get("traceback"))})
    return out


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def find_failed(message_id: str) -> tuple[str, Message] | None:
    r = client()
    for q in sorted(broker.get_declared_queues()):
        raw = r.hget(_key(f"{q}.XQ.msgs"), message_id)
        if raw is not None:
            return q, Message.decode(raw)
    return None


def _drop_failed(queue: str, message_id: str) -> None:
    r = client()
    r.zrem(_key(f"{queue}.XQ"), message_id)
    r.hdel(_key(f"{queue}.XQ.msgs"), message_id)


def retry_failed(message_id: str) -> bool:
    """Sends a dead-lettered message again, with a fresh retry budget."""
    found = find_failed(message_id)
    if found is None:
        return False
    queue, message = found
    options = {k: v for k, v in message.options.items() if k not in ("retries", "traceback", "eta")}
    broker.enqueue(message.copy(queue_name=queue.removesuffix(".DQ"), options=options))
    _drop_failed(queue, message_id)
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
