"""Fair shares: how long a small user's images wait for the GPU while another user has hundreds queued,
against the same small user alone, through a real `atelier worker --gpu` process.

    .venv/bin/python bench/fairness.py                                  # tiny SD1, 64², 2 steps, 500 queued
    .venv/bin/python bench/fairness.py --big 200 --small 8 --interval 2  # a short run
    .venv/bin/python bench/fairness.py --checkpoint full --size 512 --steps 20  # real-size (a GPU)

Set-up: a temporary ATELIER_HOME with the embedded Redis and a SQLite file, a random-weight checkpoint
imported into the catalog, two users, one GPU worker process (GPU_MAX_BATCH as set), a warm-up image.

1. Alone: the small user submits one image every --interval seconds, --small times.
2. Behind a big user: the big user queues --big images in one run (the same model; --share makes the small
   user's images the same parameters, so they may ride in the big user's batches; by default they differ
   in steps and need batches of their own), then the small user submits as in 1. The big run is
   cancelled once the small user's images are made.

A wait is queued -> started (the job's created_at -> started_at in the database, one clock). One batch
time is the median duration of the big user's full batches. Printed: both p95 waits, the batch time, and
the headline: the small user's p95 wait behind the big queue in batch times (target ≤ 2×).
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)
sys.path[0] = ROOT  # the repository replaces bench/ on the path

import argparse  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BIN = Path(sys.executable).parent
TARGET = 2.0


def setup(home: Path) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop(name, None)
    os.environ.update(ATELIER_HOME=str(home), SECRET_KEY="bench", LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1",
                      QUEUE_NAMESPACE=f"atelier-bench-fair-{os.getpid()}", GENERATION_MAX_OPEN_JOBS="0",
                      GENERATION_DAILY_IMAGES="0", GENERATION_DAILY_COST="0")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


def wait_done(gen, run_ids: list[int], worker, home: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gen.GenerationRun.get_by_id(r).status in gen.RUN_FINISHED for r in run_ids):
            return
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited:\n{(home / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.05)
    raise SystemExit(f"runs {run_ids} did not finish in {timeout} s")


def small_user_waits(jobs, gen, parse, user, body: dict, args, worker, home: Path) -> list[float]:
    """Seconds each of the small user's images waited, submitting one every args.interval seconds."""
    runs = []
    for i in range(args.small):
        runs.append(jobs.submit(user, parse({**body, "prompt": f"small {i}", "seed": i}), source="cli").id)
        time.sleep(args.interval)
    wait_done(gen, runs, worker, home, timeout=600 + 60 * args.small)
    waits = []
    for job in gen.GenerationJob.select().where(gen.GenerationJob.run.in_(runs)):
        if job.state != "done":
            raise SystemExit(f"small job {job.id} ended {job.state}: {job.error}")
        waits.append((job.started_at - job.created_at).total_seconds())
    return waits


def batch_seconds(gen, run_id: int, full: int) -> float:
    """Median duration of the run's full batches (claimed together: one claimed_by)."""
    spans: dict[str, list] = {}
    for job in gen.GenerationJob.select().where(gen.GenerationJob.run == run_id, gen.GenerationJob.state == "done"):
        spans.setdefault(job.claimed_by, []).append(job)
    durations = [(max(j.finished_at for j in js) - min(j.started_at for j in js)).total_seconds()
                 for js in spans.values() if len(js) >= full]
    if not durations:
        raise SystemExit("no full batch of the big run finished; raise --big or lower --interval")
    return statistics.median(durations)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", type=int, default=500, help="images the big user queues")
    parser.add_argument("--small", type=int, default=10, help="images the small user submits, one at a time")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between the small user's images")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--checkpoint", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--share", action="store_true", help="the small user's images use the big one's parameters")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="atelier-bench-fair-"))
    setup(home)
    worker = None
    try:
        from cli.catalog import import_file
        from gpu.demo import write_checkpoint
        from gpu.request import parse
        from jobs import generation as jobs
        from models_db import generation as gen
        from models_db.accounts import create_user
        from models_db.migrations import upgrade
        upgrade()
        path = write_checkpoint("SD1", home / "bench-sd1.safetensors", size=args.checkpoint)
        version = import_file(path, publish=True)["versionId"]
        big_user, small_user = create_user("big"), create_user("small")
        body = {"model": version, "width": args.size, "height": args.size, "steps": args.steps, "sampler": "Euler"}
        small_body = body if args.share else {**body, "steps": args.steps + 1}
        log = open(home / "worker.log", "ab")
        worker = subprocess.Popen([str(BIN / "atelier"), "worker", "--gpu"], cwd=ROOT, env=dict(os.environ),
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        warm = [jobs.submit(u, parse({**b, "prompt": "warm-up", "seed": 0}), source="cli").id
                for u, b in ((big_user, body), (small_user, small_body))]
        wait_done(gen, warm, worker, home, timeout=1800)

        alone = small_user_waits(jobs, gen, parse, small_user, small_body, args, worker, home)
        print(f"alone:       small user's waits p95 {p95(alone):6.2f} s, max {max(alone):6.2f} s ({len(alone)} images)")

        big = jobs.submit(big_user, parse({**body, "prompt": "a crowd", "quantity": args.big, "seed": 1}),
                          source="cli")
        time.sleep(args.interval)
        behind = small_user_waits(jobs, gen, parse, small_user, small_body, args, worker, home)
        made = gen.GenerationRun.get_by_id(big.id).done
        jobs.cancel(gen.GenerationRun.get_by_id(big.id))
        batch = batch_seconds(gen, big.id, full=min(8, args.big))
        print(f"behind {args.big}: small user's waits p95 {p95(behind):6.2f} s, max {max(behind):6.2f} s "
              f"({len(behind)} images; the big user had {made} made meanwhile)")
        print(f"one batch of the big user: {batch:.2f} s (median); p95 wait alone: {p95(alone) / batch:.2f} batches")
        print(f"small user's p95 wait behind {args.big} queued images: {p95(behind):.2f} s = "
              f"{p95(behind) / batch:.2f}x one batch time (target <= {TARGET:g}x); "
              f"{p95(behind) / max(p95(alone), 1e-9):.1f}x its p95 wait alone")
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
        if not args.keep:
            from models_db.redis_store import stop_embedded
            stop_embedded()
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
