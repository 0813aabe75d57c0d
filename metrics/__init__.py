"""Prometheus metrics in multiprocess mode: gunicorn workers and Dramatiq processes write to files in
METRICS_DIR and /metrics merges them. Import this package before prometheus_client anywhere."""
from __future__ import annotations

import os

import settings


def _multiprocess_dir() -> str:
    path = settings.get().metrics_dir
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)  # read by prometheus_client at import
    return str(path)


MULTIPROC_DIR = _multiprocess_dir()


def render(*collectors) -> tuple[bytes, str]:
    """The exposition text of every process's metrics plus live collectors (e.g. queue depths)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drops the live gauges of a process that ended (gunicorn child_exit, worker shutdown)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid, MULTIPROC_DIR)


def reset() -> None:
    """Removes the files of processes from an earlier run (before the Procfile starts)."""
    for name in os.listdir(MULTIPROC_DIR):
        if name.endswith(".db"):
            os.unlink(os.path.join(MULTIPROC_DIR, name))
