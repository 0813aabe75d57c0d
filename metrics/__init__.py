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
    drop_dead_processes()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Drops the live gauges of a process that ended (gunicorn child_exit, worker shutdown)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid, MULTIPROC_DIR)


def drop_dead_processes() -> None:
    """Live gauges of processes that died without saying so (SIGKILL, OOM) stop counting. The directory is
    per host, so a pid that no longer exists here is gone."""
    for name in os.listdir(MULTIPROC_DIR):
        if name.startswith(("gauge_livesum_", "gauge_liveall_")) and name.endswith(".db"):
            pid = name.rsplit("_", 1)[-1][:-3]
            if pid.isdigit() and not _alive(int(pid)):
                process_exited(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reset() -> None:
    """Removes the files of processes from an earlier run (before the Procfile starts)."""
    for name in os.listdir(MULTIPROC_DIR):
        if name.endswith(".db"):
            os.unlink(os.path.join(MULTIPROC_DIR, name))
