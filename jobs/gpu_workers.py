"""GPU workers' heartbeats. Each GPU worker process publishes what it is doing (backend, device, warm
pipelines, memory, the batch it runs, its speed) as one Redis key with a TTL: every GPU_HEARTBEAT_S from a
thread started at worker boot, and at each batch's start, first step and end. The Operations page and the operations API
read them all; a worker silent for STALE_BEATS beats is shown stale, and its key is gone after TTL_BEATS."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time

from models_db.redis_store import client, redis_key

STALE_BEATS = 3
TTL_BEATS = 12
LISTED = 500  # the most workers listed
MAX_TTL_S = 24 * 3600  # how far back the index is read (longer than any worker's TTL)
log = logging.getLogger("atelier.jobs.gpu_workers")


def index_key() -> str:
    """The workers that beat lately, scored by their last beat (read without a key scan)."""
    return redis_key("gpu-workers")


def worker_key(worker_id: str) -> str:
    return redis_key(f"gpu-worker:{worker_id}")


def beat_s() -> int:
    import settings
    return settings.get().gpu_heartbeat_s


class Batch:
    """The batch a worker runs: what it is, its progress, and afterwards how many images it made."""

    def __init__(self, beat: Heartbeat, description: dict):
        self.beat, self.description, self.images = beat, description, 0

    def on_step(self, callback):
        """callback, also counting the batch's steps for the heartbeat (written at the first, then by each beat)."""
        def on_step(done: int, total: int) -> None:
            first = not self.description["step"]
            self.description.update(step=done, steps=total)
            if first:  # the model has loaded: "loading model…" becomes "step 1/N" at once
                self.beat.write()
            callback(done, total)
        return on_step


class Heartbeat:
    """This process's record. Writing it never fails a batch: a Redis error is logged and the next beat retries."""

    def __init__(self):
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.started = time.time()
        self.lock = threading.Lock()
        self.batch: Batch | None = None
        self.batches = self.images = 0
        self.busy_s = 0.0
        self.last_rate: float | None = None  # images per second of the last batch
        self.stop_beating = threading.Event()
        self.thread: threading.Thread | None = None
        self.backend_error: str | None = None  # why the backend could not be created at boot

    # --- what it says ---------------------------------------------------------------------------------
    def record(self) -> dict:
        import settings
        from gpu.backends import created_backend
        name = settings.get().gpu_backend
        backend = created_backend(name)  # a beat never creates it: that may take a while, or fail
        try:
            status = backend.status() if backend is not None else {"backend": name}
            if backend is None and self.backend_error:
                status["error"] = self.backend_error
        except Exception as exc:  # noqa: BLE001  (the record says so instead)
            status = {"backend": getattr(backend, "name", "?"), "error": f"{type(exc).__name__}: {exc}"[:300]}
        with self.lock:
            batch = dict(self.batch.description) if self.batch else None
            counts = {"batches": self.batches, "images": self.images, "busy_s": round(self.busy_s, 3),
                      "rate": self.last_rate}
        return {"id": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(), "started": self.started,
                "beat": time.time(), "every": beat_s(), "ram": _ram(), "batch": batch, **counts, **status}

    def write(self) -> None:
        try:
            record = self.record()
            pipe = client().pipeline(transaction=False)
            pipe.set(worker_key(self.worker_id), json.dumps(record), ex=TTL_BEATS * record["every"])
            pipe.zadd(index_key(), {self.worker_id: record["beat"]})
            pipe.zremrangebyscore(index_key(), "-inf", record["beat"] - MAX_TTL_S)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001
            log.warning("GPU worker heartbeat not written: %s", exc)

    # --- batches --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def running(self, jobs: list, model, params):
        """Around one batch's generation: written at its start and at its end (with the images it made)."""
        batch = Batch(self, {"jobs": len(jobs), "runs": sorted({j.run_id for j in jobs}), "model": model.name,
                             "family": model.family, "width": params.width, "height": params.height,
                             "steps": params.steps, "sampler": params.sampler, "step": 0, "started": time.time()})
        with self.lock:
            self.batch = batch
        self.write()
        started = time.monotonic()
        try:
            yield batch
        finally:
            seconds = time.monotonic() - started
            with self.lock:
                self.batch = None
                self.batches += 1
                self.busy_s += seconds
                if batch.images:
                    self.images += batch.images
                    self.last_rate = round(batch.images / max(seconds, 1e-6), 3)
            self.write()

    # --- the beating thread (GPU workers) -------------------------------------------------------------
    def start(self) -> None:
        """Beats every GPU_HEARTBEAT_S until stop(); the first beat creates the backend, so that its device shows
        (and a backend that cannot start says why) before any batch. Its counts start from zero."""
        with self.lock:
            self.started, self.batches, self.images, self.busy_s, self.last_rate = time.time(), 0, 0, 0.0, None
        self.stop_beating.clear()

        def beat():
            from jobs import generation
            try:
                generation.backend()
            except Exception as exc:  # noqa: BLE001  (each batch will raise it too)
                log.exception("GPU backend did not start")
                self.backend_error = f"{type(exc).__name__}: {exc}"[:300]
            self.write()
            while not self.stop_beating.wait(beat_s()):
                self.write()
        self.thread = threading.Thread(target=beat, name="gpu-worker-heartbeat", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """The worker stops: no more beats, and its record goes at once."""
        self.stop_beating.set()
        if self.thread is not None:
            self.thread.join(timeout=2 * beat_s())
        with contextlib.suppress(Exception):
            client().pipeline(transaction=False).delete(worker_key(self.worker_id)).zrem(
                index_key(), self.worker_id).execute()


def _ram() -> dict:
    import psutil
    return {"rss": psutil.Process().memory_info().rss, "total": psutil.virtual_memory().total}


heartbeat = Heartbeat()


def workers() -> list[dict]:
    """Every GPU worker whose record has not expired, by id, each with "age" (seconds since its last beat)
    and "stale" (silent for STALE_BEATS of its beats: stuck, or gone without saying so)."""
    now = time.time()
    ids = client().zrevrangebyscore(index_key(), "+inf", now - MAX_TTL_S, start=0, num=LISTED)
    if not ids:
        return []
    found = []
    for raw in client().mget([worker_key(i.decode()) for i in ids]):
        if raw is not None:
            record = json.loads(raw)
            record["age"] = max(0.0, now - record["beat"])
            record["stale"] = record["age"] >= STALE_BEATS * record["every"]
            found.append(record)
    return sorted(found, key=lambda r: r["id"])
