"""Latency of the model listing while many users hold run event streams open and submit runs, beside the
same with none, measured side by side in one run against the real `atelier web` process.

Target: p95 of GET /api/v1/models under abuse <= 1.5x its p95 with no abuse.

    .venv/bin/python bench/abuse.py                          # 20 users, SQLite + embedded Redis in a temp home
    .venv/bin/python bench/abuse.py --users 40 --seconds 30
    DATABASE_URL=postgresql://user@db:5432/postgres REDIS_URL=redis://db:6379/0 .venv/bin/python bench/abuse.py

A catalog of --models models is seeded (bench/api.py's seeder) and `atelier web` started as `make run`
starts it (WEB_WORKERS, WEB_THREADS at their defaults). Each of --users users has a run queued (no GPU
worker runs: runs stay queued, as on a busy install) and opens STREAM_MAX_PER_USER event streams on it
(the most the server lets one user hold), and submits a run every --submit-every seconds. --clients
threads request GET /api/v1/models?limit=20 for --seconds, first with no abuse, then under it, then with
none again; "quiet" pools both quiet phases. This is a benchmark, not a test."""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = str(ROOT)

from bench.api import environment_from_env, percentile, seed  # noqa: E402

TARGET = 1.5
LISTING = "/api/v1/models?limit=20"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed_listing(base: str, seconds: float, clients: int) -> list[float]:
    """Milliseconds of the listing requests `clients` threads (a connection each) make in `seconds`."""
    import requests
    times: list[float] = []
    ends = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < ends:
                started = time.perf_counter()
                response = session.get(base + LISTING, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{LISTING} -> {response.status_code}")
                times.append(elapsed)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(times)


def open_stream(base: str, run_id: int, key: str) -> tuple[socket.socket, int]:
    """An event stream on a socket of its own, and its status once its headers (and the replay) came."""
    url = urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall(f"GET /api/v1/generation/runs/{run_id}/events HTTP/1.1\r\nHost: {url.netloc}\r\n"
                 f"Authorization: Bearer {key}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, int(head.split(b" ", 2)[1]) if head else 0


class Abuse:
    """Users holding their streams and submitting runs, until stopped."""

    def __init__(self, base: str, users: list[tuple[str, int]], streams_each: int, submit_every: float,
                 body: dict):
        self.base, self.users, self.body, self.every = base, users, body, submit_every
        self.stop = threading.Event()
        self.sockets, self.statuses, self.submitted, self.refused = [], [], 0, 0
        for key, run_id in users:
            for _ in range(streams_each):
                sock, status = open_stream(base, run_id, key)
                self.sockets.append(sock)
                self.statuses.append(status)
        self.threads = [threading.Thread(target=self.submit, args=(key,), daemon=True) for key, _ in users]
        for t in self.threads:
            t.start()

    def submit(self, key: str) -> None:
        import requests
        with requests.Session() as session:
            while not self.stop.wait(self.every * random.uniform(0.5, 1.5)):
                answer = session.post(self.base + "/api/v1/generation", json=self.body,
                                      headers={"Authorization": f"Bearer {key}"}, timeout=30)
                if answer.status_code == 202:
                    self.submitted += 1
                else:
                    self.refused += 1

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        for sock in self.sockets:
            sock.close()


def run(args) -> int:
    import requests

    import settings
    settings.reload()
    from models_db import db as database
    from models_db.migrations import upgrade
    upgrade()
    db = database.db
    db.connect(reuse_if_open=True)
    counts = seed(db, args.models, random.Random(args.seed), settings.get().is_sqlite)["counts"]
    db.execute_sql("ANALYZE" if settings.get().is_sqlite else "VACUUM ANALYZE")
    from cli.catalog import import_file
    from gpu.demo import write_checkpoint
    from models_db.accounts import create_api_key, create_user
    checkpoint = write_checkpoint("SD1", settings.get().home / "tiny-sd15.safetensors", size="tiny")
    model = import_file(checkpoint, name="Bench checkpoint", base_model="SD 1.5", publish=True)
    keys = [create_api_key(create_user(f"abuser_{n:03d}"), "bench", "write")[1] for n in range(args.users)]
    db.close()
    body = {"model": model["versionId"], "prompt": "a kite", "width": 64, "height": 64, "steps": 2}
    s = settings.get()
    print(f"database: {s.database_url.split('@')[-1]}; redis: {s.redis_url or 'embedded'}; seeded {counts}",
          flush=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(s.home / "web.log", "wb")
    web = subprocess.Popen([str(Path(sys.executable).parent / "atelier"), "web", "--bind", f"127.0.0.1:{port}"],
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
    abuse = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or web.poll() is not None:
                raise SystemExit("atelier web did not start: " + (s.home / "web.log").read_text()[-2000:])
            time.sleep(0.2)
        print(f"atelier web: {s.web_workers} worker processes x {s.web_threads} request threads; "
              f"{args.clients} clients requesting {LISTING} for {args.seconds:g} s per phase", flush=True)
        timed_listing(base, 2, args.clients)  # warm-up
        quiet = timed_listing(base, args.seconds, args.clients)
        users = []
        for key in keys:
            answer = requests.post(base + "/api/v1/generation", json=body,
                                   headers={"Authorization": f"Bearer {key}"}, timeout=30)
            users.append((key, answer.json()["id"]))
        abuse = Abuse(base, users, s.stream_max_per_user, args.submit_every, body)
        open_streams = abuse.statuses.count(200)
        busy = timed_listing(base, args.seconds, args.clients)
        abuse.close()
        print(f"abuse: {args.users} users, {open_streams} event streams open "
              f"({len(abuse.statuses) - open_streams} refused), {abuse.submitted} runs submitted "
              f"({abuse.refused} refused) while measuring", flush=True)
        abuse = None
        quiet = sorted(quiet + timed_listing(base, args.seconds, args.clients))
    finally:
        if abuse is not None:
            abuse.close()
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
        log.close()

    head = f"{'phase':<8} {'requests':>8} {'median ms':>10} {'p95 ms':>8} {'p95 x quiet':>12}"
    print("\n" + head + "\n" + "-" * len(head))
    for name, times in (("quiet", quiet), ("abuse", busy)):
        print(f"{name:<8} {len(times):>8} {percentile(times, 50):>10.1f} {percentile(times, 95):>8.1f} "
              f"{percentile(times, 95) / percentile(quiet, 95):>11.2f}x")
    ratio = percentile(busy, 95) / percentile(quiet, 95)
    print(f"\np95 of GET {LISTING} with {args.users} users holding {open_streams} streams and submitting runs: "
          f"{ratio:.2f}x the quiet p95 (target <= {TARGET}x): {'met' if ratio <= TARGET else 'NOT met'}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20, help="abusing users (default 20)")
    p.add_argument("--models", type=int, default=5000, help="models to seed (default 5000)")
    p.add_argument("--seconds", type=float, default=15, help="length of each timed phase (default 15)")
    p.add_argument("--clients", type=int, default=4, help="concurrent listing clients (default 4)")
    p.add_argument("--submit-every", type=float, default=1.0,
                   help="seconds between one user's run submissions (default 1)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the catalog (default 1)")
    args = p.parse_args()
    with environment_from_env("abuse"):
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
