"""metrics.buffer: counts and histograms tallied in the process, written by flush(), equal what direct
updates write to the multiprocess files; nothing counted is lost when a worker stops or the process exits."""
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from dramatiq import Message
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

import metrics
from metrics.buffer import MetricsBuffer

ROOT = Path(__file__).parents[2]
BUCKETS = (.005, .025, .1, .5, 1, 5)


def samples(prefix: str) -> dict:
    """{(sample name without the prefix, labels): value} of the metrics named prefix*, over every process."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics.MULTIPROC_DIR)
    return {(s.name[len(prefix):], tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples if s.name.startswith(prefix)}


def pair(kind, labels=("actor",), **kw):
    """The same metric twice (unregistered: only the multiprocess files hold them): direct and buffered."""
    tag = uuid.uuid4().hex[:8]
    return (kind(f"t{tag}_direct", "d", labels, registry=None, **kw),
            kind(f"t{tag}_buffered", "b", labels, registry=None, **kw), f"t{tag}_direct", f"t{tag}_buffered")


# values on bucket bounds, between them, above the last (+Inf), zero and negative
VALUES = [0.0, 0.005, 0.0051, 0.024, 0.025, 0.1, 0.3, 0.5, 0.99, 1.0, 4.9999, 5.0, 5.0001, 60.0, 1e9, -1.0]


def test_flushed_histograms_and_counters_equal_direct_updates():
    direct_h, buffered_h, dh, bh = pair(Histogram, buckets=BUCKETS)
    direct_c, buffered_c, dc, bc = pair(Counter, labels=("actor", "outcome"))
    buffer = MetricsBuffer()
    for i, value in enumerate(VALUES * 3):
        actor = ("a", "b")[i % 2]
        direct_h.labels(actor).observe(value)
        buffer.observe(buffered_h.labels(actor), value)
        direct_c.labels(actor, "ok").inc()
        buffer.inc(buffered_c.labels(actor, "ok"))
    direct_c.labels("a", "big").inc(2.5)
    buffer.inc(buffered_c.labels("a", "big"), 2.5)
    assert samples(dh) and samples(dc)
    assert not any(samples(bh).values()) and not any(samples(bc).values())  # nothing written before flush()
    buffer.flush()
    assert samples(bh) == samples(dh)
    assert samples(bc) == samples(dc)
    buffer.flush()  # empty: writes nothing more
    assert samples(bh) == samples(dh) and samples(bc) == samples(dc)


def test_concurrent_updates_while_the_thread_flushes_are_all_written():
    direct_h, buffered_h, dh, bh = pair(Histogram, buckets=BUCKETS)
    _, counter, _, cname = pair(Counter)
    buffer = MetricsBuffer(interval=0.001)
    buffer.start()
    per_thread = 2000

    def work(t: int):
        for i in range(per_thread):
            buffer.inc(counter.labels(f"w{t % 2}"))
            buffer.observe(buffered_h.labels("x"), VALUES[(i + t) % len(VALUES)])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    buffer.stop()  # the last user: stops the thread and writes the rest
    for t in range(4):
        for i in range(per_thread):
            direct_h.labels("x").observe(VALUES[(i + t) % len(VALUES)])
    got = samples(cname)
    assert got[("_total", (("actor", "w0"),))] == got[("_total", (("actor", "w1"),))] == 2 * per_thread
    assert samples(bh) == pytest.approx(samples(dh))  # the sum's additions in another order


def test_start_and_stop_nest_and_each_stop_flushes():
    _, counter, _, cname = pair(Counter)
    buffer = MetricsBuffer(interval=3600)  # the thread never ticks here: only stop() writes
    buffer.start()
    buffer.start()
    buffer.inc(counter.labels("a"))
    buffer.stop()
    assert samples(cname)[("_total", (("actor", "a"),))] == 1
    assert buffer._thread is not None and buffer._thread.is_alive()  # one user left
    buffer.inc(counter.labels("a"))
    buffer.stop()
    assert samples(cname)[("_total", (("actor", "a"),))] == 2
    assert buffer._thread is None


def test_the_worker_middleware_writes_its_counts_at_worker_shutdown():
    from jobs.broker import broker
    from jobs.middleware import Metrics
    from jobs.queues import actor_totals
    middleware = Metrics()
    middleware.buffer = MetricsBuffer(interval=3600)
    worker = type("W", (), {"consumer_whitelist": {"default"}})()
    actor = f"buffer_test_{uuid.uuid4().hex[:8]}"
    middleware.after_worker_boot(broker, worker)
    message = Message(queue_name="default", actor_name=actor, args=(), kwargs={}, options={"retries": 1},
                      message_timestamp=int(time.time() * 1000))
    middleware.before_process_message(broker, message)
    middleware.after_process_message(broker, message)
    middleware.before_process_message(broker, message)
    middleware.after_process_message(broker, message, exception=ValueError())
    middleware.after_skip_message(broker, message)
    assert not any(actor_totals()[actor].values())  # the series exist (labels()), at zero
    middleware.after_worker_shutdown(broker, worker)
    assert actor_totals()[actor] == {"started": 2, "retried": 2, "succeeded": 1, "failed": 1, "skipped": 1}
    durations = samples("atelier_job_duration_seconds")
    assert durations[("_count", (("actor", actor),))] == 2


def test_counts_are_written_at_process_exit():
    tag = f"t{uuid.uuid4().hex[:8]}_exit"
    code = ("import settings, metrics\n"
            "from prometheus_client import Counter\n"
            "from metrics.buffer import buffer\n"
            f"buffer.inc(Counter({tag!r}, 'x', registry=None), 3)\n")  # never flushed by hand: atexit does
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert samples(tag)[("_total", ())] == 3
