"""Counter and histogram updates tallied in the process and written to the multiprocess files a few times
a second. A multiprocess update is an mmap write under prometheus_client's process-wide lock, several per
job; here a job only adds to a dict under a lock of its own, and a thread (or flush()) writes each
series' sum at once: a counter's increments as one inc(), a histogram's bucket counts and sum as one
inc() per bucket that was hit and one on the sum.

Histograms are written through the labelled child's `_upper_bounds`, `_buckets` and `_sum` (no public
API adds many observations at once), hence the tight prometheus-client pin in setup.cfg;
tests/unit/test_metrics_buffer.py checks that the exposition equals that of observe() per value.
A process killed without warning (SIGKILL, OOM) loses what it counted in its last interval."""
from __future__ import annotations

import atexit
import logging
import os
import threading
from bisect import bisect_left

FLUSH_INTERVAL_S = 0.25


class MetricsBuffer:
    """inc()/observe() take a labelled child (`counter.labels(...)`, `histogram.labels(...)`, or an
    unlabelled metric). start()/stop() run the flushing thread (nested: it runs while any starter has not
    stopped); stop() and process exit (atexit) flush what is left."""

    def __init__(self, interval: float = FLUSH_INTERVAL_S):
        self.interval = interval
        self._reset()
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._reset)  # the parent writes what it had counted

    def _reset(self) -> None:
        self._lock = threading.Lock()  # held only to update or swap the tallies
        self._counts: dict = {}  # counter child -> amount
        self._hists: dict = {}  # histogram child -> [count per bucket..., sum]
        self._users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def inc(self, child, amount: float = 1.0) -> None:
        with self._lock:
            self._counts[child] = self._counts.get(child, 0.0) + amount

    def observe(self, child, value: float) -> None:
        bounds = child._upper_bounds
        i = bisect_left(bounds, value)  # the first bucket with value <= bound, as Histogram.observe
        with self._lock:
            tally = self._hists.get(child)
            if tally is None:
                tally = self._hists[child] = [0] * len(bounds) + [0.0]
            tally[i] += 1
            tally[-1] += value

    def flush(self) -> None:
        """Writes and clears the tallies (any thread; concurrent flushes write disjoint tallies)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            hists, self._hists = self._hists, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, tally in hists.items():
            for bucket, n in zip(child._buckets, tally):
                if n:
                    bucket.inc(n)
            child._sum.inc(tally[-1])

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="metrics-flush",
                                            daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """One starter is done: the last one stops the thread. Flushes in any case."""
        with self._lock:
            self._users = max(0, self._users - 1)
            thread = self._thread if not self._users else None
            if thread is not None:
                self._stop.set()
                self._thread = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)  # a flush in progress is finished
        self.flush()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001  (the next tick writes what comes after)
                logging.getLogger(__name__).warning("metrics not written: %s", e)


buffer = MetricsBuffer()
