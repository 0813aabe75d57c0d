"""Job throughput: no-op jobs and jobs that write one DB row, through Atelier's broker and middleware vs
bare Dramatiq on the same Redis in the same run (and Celery and RQ when they are installed), printing
jobs/s and the ratios.

Targets: Atelier >= 0.8x bare Dramatiq; Atelier >= 3x Celery.

    .venv/bin/python bench/queue.py                       # 5000 no-op + 2000 db-row jobs, 2 x 8, 3 runs
    .venv/bin/python bench/queue.py --jobs 20000 --db-jobs 5000 --processes 4 --threads 8 --repeat 5
    .venv/bin/python bench/queue.py --pg-url              # PostgreSQL (temp database next to .../test)
    .venv/bin/python bench/queue.py --embedded-redis      # Atelier's embedded redis-server, not 127.0.0.1
    .venv/bin/python bench/queue.py --systems atelier,bare

Set-up: a temporary ATELIER_HOME (never ./var), a unique QUEUE_NAMESPACE, the real Redis at
redis://127.0.0.1:6379/0 when it answers (else the embedded redis-server in the temporary home), a
SQLite file in the temporary home (or, with --pg-url, a temporary PostgreSQL database created next to
the given one and dropped at the end), migrations.upgrade(), and a bench_row table.

Systems, each a real worker subprocess (cwd = repository root, PYTHONPATH = repository root):
  atelier   `dramatiq jobs bench._queue_actors --processes P --threads T --queues bench`: actors on
            Atelier's broker (its batching consumer, jobs/redis_consumer.py) with all its middleware
            (bench/_queue_actors.py);
  bare      `dramatiq bench._bare_actors:broker --processes P --threads T --queues bench`: a plain
            RedisBroker with Dramatiq's default middleware, own namespace, same Redis; its DB-row job
            uses peewee's pooled database on the same DB, connection_context per job
            (bench/_bare_actors.py);
  celery    `celery worker -P prefork -c P` and/or `-P threads -c P*T` (--celery-pool), Redis broker,
            results ignored, without gossip/mingle/heartbeat (Celery's usual tuning);
  rq        P `rq worker` processes; worker class SimpleWorker (no fork per job) unless --rq-worker-class
            (RQ's own default, rq.worker.Worker, forks a work horse per job: ~15 jobs/s on 2 CPUs).

Every job INCRs a Redis counter with a plain redis-py client (the same counting everywhere); the
DB-row job first inserts one bench_row row. One measurement: start the worker, send 2*P*T warm-up
jobs of the kind and wait for them (the worker is up, connected and polling), then at once enqueue N
jobs from this process while a thread polls the counter every 2 ms; timed from the first enqueue to
the N-th completion. Printed per system and kind: end-to-end jobs/s (the figure the targets are
about: N / (last done - first enqueue)), processing jobs/s (from the first completion seen to the
last: the workers alone, without the enqueue head start), and the enqueue rate (sends/s while the
workers consume; a '*' marks figures within 10% of it, i.e. bounded by the single sending thread).
Each measurement is repeated R times (--repeat), the systems' order rotating every
round, each round with fresh workers; the table gives medians and Atelier's ratios. DB-row runs are
checked afterwards (exactly N rows of that run). This is a benchmark, not a test: it prints figures
and verdicts, and exits 0 unless a measurement could not finish.

Everything is removed at the end, also on Ctrl-C: worker process groups, the Redis keys of this run
(its namespaces; Atelier keeps its own keys, e.g. the in-flight job registry, under QUEUE_NAMESPACE
too), the temporary database and home.
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)

# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = ROOT

import argparse  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

REAL_REDIS = "redis://127.0.0.1:6379/0"
PG_DEFAULT = "postgresql://127.0.0.1:5432/test"
BIN = Path(sys.executable).parent
TARGET_BARE = 0.8
TARGET_CELERY = 3.0
KINDS = ("noop", "db")
KIND_LABEL = {"noop": "no-op", "db": "db-row"}


# --- set-up and clean-up ----------------------------------------------------------------------------

class Cleanup:
    """Callbacks run once, last registered first, from `finally` (also after Ctrl-C / SIGTERM)."""

    def __init__(self):
        self.steps = []
        self.done = False

    def add(self, what, fn, *args):
        self.steps.append((what, fn, args))

    def run(self):
        if self.done:
            return
        self.done = True
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave debris
        try:
            for what, fn, args in reversed(self.steps):
                try:
                    fn(*args)
                except Exception as e:  # keep cleaning
                    print(f"cleanup: {what} failed: {type(e).__name__}: {e}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, old)


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pick_redis(args) -> str:
    """REDIS_URL for this run: --redis-url, else the real Redis if it answers, else "" (embedded)."""
    import redis
    if args.redis_url:
        return args.redis_url
    if args.embedded_redis:
        return ""
    try:
        if redis.Redis.from_url(REAL_REDIS, socket_timeout=1, socket_connect_timeout=1).ping():
            return REAL_REDIS
    except (redis.RedisError, OSError):
        pass
    return ""


from bench.api import pg_admin  # noqa: E402


def setup_environment(args, cleanup: Cleanup, prefix: str) -> dict:
    """Temporary home, namespace, Redis and database in os.environ, before settings is imported."""
    run_id = uuid.uuid4().hex[:10]
    home = Path(tempfile.mkdtemp(prefix=f"atelier-bench-{prefix}-"))
    cleanup.add("remove the temporary home", shutil.rmtree, home, True)
    ns = f"atelier-bench-{prefix}-{run_id}"
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "METRICS_DIR", "SECRET_KEY", "PUBLIC_URL",
                 "QUEUE_NAMESPACE", "JOB_HEARTBEAT_TIMEOUT_S", "JOB_MAINTENANCE_CHANCE", "PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop(name, None)
    os.environ.update(ATELIER_HOME=str(home), QUEUE_NAMESPACE=ns, SECRET_KEY="bench", LOG_LEVEL="WARNING")
    redis_url = pick_redis(args)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    pg_db = ""
    if args.pg_url:
        import psycopg2  # noqa: F401  (fail before creating anything)
        pg_db = f"atelier_bench_{run_id}"
        pg_admin(args.pg_url, f"CREATE DATABASE {pg_db}")
        cleanup.add(f"drop database {pg_db}", pg_admin, args.pg_url, f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
        os.environ["DATABASE_URL"] = args.pg_url.rsplit("/", 1)[0] + "/" + pg_db
    return {"home": home, "ns": ns, "run_id": run_id, "pg_db": pg_db}


def stop_embedded_redis():
    """Shut down the embedded redis-server of the temporary home (without saving) before it is removed."""
    import redis

    import settings
    s = settings.get()
    if s.redis_url or not s.redis_socket.exists():
        return
    try:
        redis.Redis.from_url(f"unix://{s.redis_socket}", socket_timeout=5).shutdown(nosave=True)
    except (redis.RedisError, OSError):
        pass  # the server closes the connection as it stops


def delete_keys(r, pattern: str) -> int:
    n = 0
    batch = []
    for key in r.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            n += r.unlink(*batch)
            batch = []
    if batch:
        n += r.unlink(*batch)
    return n


class Workers:
    """Worker subprocesses, each in its own session (its whole process group is signalled)."""

    def __init__(self, home: Path, env: dict):
        self.home = home
        self.env = env
        self.procs: list[tuple[subprocess.Popen, str]] = []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        with open(self.home / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((proc, name))
        return proc

    def stop(self, proc: subprocess.Popen, sig=signal.SIGTERM, timeout=30) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (children of a dead master)
        except ProcessLookupError:
            pass
        proc.wait()
        self.procs = [(p, n) for p, n in self.procs if p is not proc]

    def stop_all(self, sig=signal.SIGTERM) -> None:
        for proc, _ in list(self.procs):
            self.stop(proc, sig)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- the systems ------------------------------------------------------------------------------------

class System:
    key = ""
    label = ""

    def __init__(self, ctx):
        self.ctx = ctx
        self.procs: list[subprocess.Popen] = []

    def commands(self) -> list[tuple[str, list[str]]]:
        raise NotImplementedError

    def start(self, workers: Workers, rep: int) -> None:
        self.log_names = []
        for i, (name, cmd) in enumerate(self.commands()):
            log_name = f"{self.key}-{rep}-{i}-{name}"
            self.log_names.append(log_name)
            self.procs.append(workers.start(log_name, cmd))

    def stop(self, workers: Workers) -> None:
        for proc in self.procs:
            workers.stop(proc)
        self.procs = []

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def send(self, kind: str, key: str, tag: str, i: int) -> None:
        raise NotImplementedError


class Atelier(System):
    key = "atelier"
    label = "Atelier"

    def __init__(self, ctx):
        super().__init__(ctx)
        from bench import _queue_actors as qa
        self.qa = qa

    def commands(self):
        a = self.ctx["args"]
        return [("dramatiq", [str(BIN / "dramatiq"), "jobs", "bench._queue_actors", "--processes", str(a.processes),
                              "--threads", str(a.threads), "--queues", "bench"])]

    def send(self, kind, key, tag, i):
        if kind == "noop":
            self.qa.noop.send(key)
        else:
            self.qa.db_row.send(key, tag, i)


class Bare(System):
    key = "bare"
    label = "bare Dramatiq"

    def __init__(self, ctx):
        super().__init__(ctx)
        from bench import _bare_actors as ba
        self.ba = ba

    def commands(self):
        a = self.ctx["args"]
        return [("dramatiq", [str(BIN / "dramatiq"), "bench._bare_actors:broker", "--processes", str(a.processes),
                              "--threads", str(a.threads), "--queues", "bench"])]

    def send(self, kind, key, tag, i):
        if kind == "noop":
            self.ba.noop.send(key)
        else:
            self.ba.db_row.send(key, tag, i)


class Celery(System):
    def __init__(self, ctx, pool: str):
        super().__init__(ctx)
        from bench import _bare_actors as ba
        a = ctx["args"]
        self.pool = pool
        self.concurrency = a.processes if pool == "prefork" else a.processes * a.threads
        self.key = f"celery-{pool}"
        self.label = f"Celery {pool} -c {self.concurrency}"
        app = ba.celery_app
        self.noop_task, self.db_task = app.tasks["bench.noop"], app.tasks["bench.db_row"]

    def commands(self):
        return [("celery", [str(BIN / "celery"), "-A", "bench._bare_actors:celery_app", "worker", "-P", self.pool,
                            "-c", str(self.concurrency), "-Q", self.ctx["celery_queue"], "--without-gossip",
                            "--without-mingle", "--without-heartbeat", "-l", "WARNING",
                            "-n", f"{self.ctx['ns']}-{self.pool}@%h"])]

    def send(self, kind, key, tag, i):
        if kind == "noop":
            self.noop_task.delay(key)
        else:
            self.db_task.delay(key, tag, i)


class RQ(System):
    key = "rq"

    def __init__(self, ctx):
        super().__init__(ctx)
        import redis
        import rq
        from bench import _bare_actors as ba
        self.ba = ba
        self.queue = rq.Queue(ctx["rq_queue"], connection=redis.Redis.from_url(ctx["redis_url"]))
        self.worker_class = ctx["args"].rq_worker_class
        self.label = f"RQ {ctx['args'].processes} x {self.worker_class.rsplit('.', 1)[-1]}"
        self.n = 0

    def commands(self):
        a = self.ctx["args"]
        return [(f"rq{i}", [str(BIN / "rq"), "worker", "-u", self.ctx["redis_url"], "-w", self.worker_class,
                            "-n", f"{self.ctx['ns']}-rq-{uuid.uuid4().hex[:6]}", "--logging_level", "WARNING",
                            self.ctx["rq_queue"]]) for i in range(a.processes)]

    def send(self, kind, key, tag, i):
        self.n += 1
        job_id = f"{self.ctx['ns']}-{self.n}"
        if kind == "noop":
            self.queue.enqueue(self.ba.rq_noop, key, job_id=job_id, result_ttl=0, failure_ttl=3600)
        else:
            self.queue.enqueue(self.ba.rq_db_row, key, tag, i, job_id=job_id, result_ttl=0, failure_ttl=3600)


# --- measuring --------------------------------------------------------------------------------------

class Poller(threading.Thread):
    """Polls the completion counter every 2 ms: when the first and the N-th completion were seen."""

    def __init__(self, r, key: str, n: int):
        super().__init__(daemon=True)
        self.r, self.key, self.n = r, key, n
        self.first = None  # (time, count) of the first non-zero reading
        self.done_at = None
        self.count = 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            c = int(self.r.get(self.key) or 0)
            now = time.perf_counter()
            self.count = c
            if c and self.first is None:
                self.first = (now, c)
            if c >= self.n:
                self.done_at = now
                return
            time.sleep(0.002)


def wait_count(r, key: str, n: int, timeout: float, system: System) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(r.get(key) or 0) >= n:
            return True
        if not system.alive():
            return False
        time.sleep(0.01)
    return False


class MeasurementFailed(Exception):
    pass


def measure(ctx, system: System, kind: str, n: int, rep: int) -> dict:
    r, ns, a = ctx["r"], ctx["ns"], ctx["args"]
    warm = 2 * a.processes * a.threads
    wkey = f"{ns}:bench:warm:{uuid.uuid4().hex}"
    for i in range(warm):
        system.send(kind, wkey, f"warm-{system.key}", i)
    if not wait_count(r, wkey, warm, a.start_timeout, system):
        raise MeasurementFailed(f"{system.label}: the {warm} warm-up jobs did not finish "
                                f"(worker {'exited' if not system.alive() else 'too slow'})")
    key = f"{ns}:bench:done:{uuid.uuid4().hex}"
    tag = f"{system.key}-{kind}-{rep}"
    poller = Poller(ctx["r_poll"], key, n)
    poller.start()
    t0 = time.perf_counter()
    for i in range(n):
        system.send(kind, key, tag, i)
    t_enq = time.perf_counter()
    poller.join(timeout=max(120.0, n / 5))
    poller.halt.set()
    if poller.done_at is None:
        raise MeasurementFailed(f"{system.label}: {poller.count}/{n} {kind} jobs done before the timeout")
    first_t, first_c = poller.first
    out = {
        "e2e": n / (poller.done_at - t0),
        "proc": (n - first_c) / (poller.done_at - first_t) if poller.done_at > first_t else float("nan"),
        "enq": n / (t_enq - t0),
        "secs": poller.done_at - t0,
    }
    if kind == "db":
        from bench._queue_actors import BenchRow
        from models_db import db as database
        database.db.connect(reuse_if_open=True)
        rows = BenchRow.select().where(BenchRow.kind == tag).count()
        database.db.close()
        out["rows"] = rows
        if rows != n:
            print(f"  WARNING: {system.label} {kind} run {rep + 1}: {rows} rows for {n} jobs", flush=True)
    return out


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x == x else "n/a"


def print_table(ctx, results, systems, skipped):
    a = ctx["args"]
    print()
    print(f"===== job throughput: {a.jobs} no-op / {a.db_jobs} db-row jobs, {a.processes} processes x "
          f"{a.threads} threads, median of {a.repeat} runs =====")
    print(f"redis: {ctx['redis_desc']}; database: {ctx['db_desc']}; CPUs: {os.cpu_count()}; "
          f"dramatiq {ctx['versions'].get('dramatiq')}, celery {ctx['versions'].get('celery', '-')}, "
          f"rq {ctx['versions'].get('rq', '-')}")
    head = (f"{'kind':<7} {'system':<26} {'end-to-end jobs/s':>18} {'(min..max)':>17} {'processing/s':>13} "
            f"{'enqueue/s':>10}  {'Atelier / this':>14}")
    print(head)
    print("-" * len(head))
    medians = {}
    producer_bound = False
    for kind in KINDS:
        for s in systems:
            runs = results.get((s.key, kind), [])
            if not runs:
                continue
            e2e = [x["e2e"] for x in runs]
            medians[(s.key, kind)] = statistics.median(e2e)
        base = medians.get(("atelier", kind))
        for s in systems:
            runs = results.get((s.key, kind), [])
            if not runs:
                print(f"{KIND_LABEL[kind]:<7} {s.label:<26} {'no result':>18}")
                continue
            med = medians[(s.key, kind)]
            lo, hi = min(x["e2e"] for x in runs), max(x["e2e"] for x in runs)
            proc = statistics.median(x["proc"] for x in runs)
            enq = statistics.median(x["enq"] for x in runs)
            ratio = f"{base / med:.2f}x" if base else "n/a"
            # the workers kept up with the sender in most runs: the figure is partly the enqueue rate
            bound = sum(x["e2e"] >= 0.9 * x["enq"] for x in runs) * 2 > len(runs)
            producer_bound = producer_bound or bound
            print(f"{KIND_LABEL[kind]:<7} {s.label:<26} {fmt_rate(med) + ('*' if bound else ' '):>18} "
                  f"{fmt_rate(lo) + '..' + fmt_rate(hi):>17} {fmt_rate(proc):>13} {fmt_rate(enq):>10}  {ratio:>14}")
    if producer_bound:
        print("* end-to-end within 10% of the enqueue rate in most runs: the workers kept up with the single "
              "sending thread, so this is a lower bound of what they can do (and Atelier's ratio against it an "
              "upper bound)")
    for line in skipped:
        print(line)
    print()
    print("verdicts (ratios of the median end-to-end jobs/s):")
    for kind in KINDS:
        base = medians.get(("atelier", kind))
        for s in systems:
            if s.key == "atelier":
                continue
            target = TARGET_BARE if s.key == "bare" else TARGET_CELERY if s.key.startswith("celery") else None
            other = medians.get((s.key, kind))
            if not base or not other:
                if target:
                    print(f"  {KIND_LABEL[kind]:<7} Atelier / {s.label}: no result")
                continue
            ratio = base / other
            if target is None:
                print(f"  {KIND_LABEL[kind]:<7} Atelier / {s.label} = {ratio:.2f}x   (no target)")
                continue
            print(f"  {KIND_LABEL[kind]:<7} Atelier / {s.label} = {ratio:.2f}x   target >= {target:g}x: "
                  f"{'MET' if ratio >= target else 'MISSED'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=5000, help="no-op jobs per measurement (default 5000)")
    p.add_argument("--db-jobs", type=int, default=2000, help="db-row jobs per measurement (default 2000)")
    p.add_argument("--processes", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--threads", type=int, default=8, help="threads per Dramatiq process (default 8)")
    p.add_argument("--repeat", "-R", type=int, default=3, help="runs per system and kind (default 3)")
    p.add_argument("--systems", default="atelier,bare,celery,rq",
                   help="comma-separated subset of atelier,bare,celery,rq (default: all)")
    p.add_argument("--celery-pool", default="prefork", choices=("prefork", "threads", "both"),
                   help="prefork: -c PROCESSES; threads: -c PROCESSES*THREADS (default prefork)")
    p.add_argument("--rq-worker-class", default="rq.worker.SimpleWorker",
                   help="rq.worker.SimpleWorker (default: no fork per job, RQ's fastest) or rq.worker.Worker "
                        "(RQ's own default, a work horse forked per job: ~15 jobs/s on 2 CPUs, use few --jobs)")
    p.add_argument("--redis-url", default="", help=f"Redis to use (default {REAL_REDIS} if it answers, "
                                                   "else the embedded redis-server)")
    p.add_argument("--embedded-redis", action="store_true", help="use Atelier's embedded redis-server")
    p.add_argument("--pg-url", nargs="?", const=PG_DEFAULT, default="",
                   help=f"use PostgreSQL: a temporary database next to this one (default {PG_DEFAULT})")
    p.add_argument("--start-timeout", type=float, default=120, help="seconds for a worker to come up")
    args = p.parse_args()
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]

    signal.signal(signal.SIGTERM, _sigterm)
    cleanup = Cleanup()
    failed = False
    try:
        ctx = setup_environment(args, cleanup, "queue")
        ctx["args"] = args
        home, ns = ctx["home"], ctx["ns"]

        import redis

        import settings
        settings.reload()
        from models_db import db as database
        from models_db.migrations import upgrade
        upgrade()
        import jobs  # noqa: F401  (Atelier's broker and middleware)
        from models_db.redis_store import redis_url
        cleanup.add("stop the embedded redis-server", stop_embedded_redis)
        s = settings.get()
        ctx["redis_url"] = url = redis_url()
        ctx["redis_desc"] = s.redis_url or f"embedded ({url})"
        ctx["db_desc"] = (f"PostgreSQL {ctx['pg_db']} (temporary)" if ctx["pg_db"] else "SQLite file in the temp home")
        r = redis.Redis.from_url(url)
        ctx["r"], ctx["r_poll"] = r, redis.Redis.from_url(url)
        ctx["celery_queue"] = f"{ns}-celery"
        ctx["rq_queue"] = f"{ns}-rq"

        rq_lock_existed = r.exists("rq:clean_groups")

        def clean_redis():
            n = 0
            for pattern in (f"{ns}:*", f"{ns}-bare:*", f"{ns}-celery:*", f"rq:*{ns}*"):
                n += delete_keys(r, pattern)
            r.srem("rq:queues", f"rq:queue:{ctx['rq_queue']}")
            for member in r.smembers("rq:workers"):
                if ns.encode() in member:
                    r.srem("rq:workers", member)
            if not rq_lock_existed:
                r.delete("rq:clean_groups")  # RQ's global clean-up lock, set by our workers (it has a TTL)
            print(f"cleanup: {n} Redis keys of this run removed", flush=True)

        cleanup.add("remove this run's Redis keys", clean_redis)

        from bench import _queue_actors as qa
        database.db.create_tables([qa.BenchRow, qa.SoakRow], safe=True)
        database.db.close()

        env = dict(os.environ, PYTHONPATH=ROOT, BENCH_REDIS_URL=url, BENCH_DB_URL=s.database_url,
                   BENCH_NAMESPACE=f"{ns}-bare", BENCH_CELERY_PREFIX=f"{ns}-celery:",
                   BENCH_CELERY_QUEUE=ctx["celery_queue"], PYTHONUNBUFFERED="1")
        os.environ.update({k: v for k, v in env.items() if k.startswith("BENCH_")})  # before _bare_actors loads
        workers = Workers(home, env)
        cleanup.add("stop the workers", workers.stop_all, signal.SIGKILL)

        import dramatiq
        versions = {"dramatiq": dramatiq.__version__}
        systems: list[System] = []
        skipped: list[str] = []
        if "atelier" in wanted:
            systems.append(Atelier(ctx))
        if "bare" in wanted:
            systems.append(Bare(ctx))
        if "celery" in wanted:
            try:
                import celery
                versions["celery"] = celery.__version__
                for pool in (("prefork", "threads") if args.celery_pool == "both" else (args.celery_pool,)):
                    systems.append(Celery(ctx, pool))
            except ImportError:
                skipped.append("celery not installed: skipped")
        if "rq" in wanted:
            try:
                import rq
                versions["rq"] = rq.__version__ if hasattr(rq, "__version__") else rq.VERSION
                systems.append(RQ(ctx))
            except ImportError:
                skipped.append("rq not installed: skipped")
        ctx["versions"] = versions
        for line in skipped:
            print(line)
        print(f"home {home}; namespace {ns}; redis {ctx['redis_desc']}; database {ctx['db_desc']}; "
              f"{os.cpu_count()} CPUs", flush=True)

        results: dict = {}
        for rep in range(args.repeat):
            order = systems[rep % len(systems):] + systems[:rep % len(systems)]
            for system in order:
                system.start(workers, rep)
                try:
                    for kind in KINDS:
                        n = args.jobs if kind == "noop" else args.db_jobs
                        try:
                            res = measure(ctx, system, kind, n, rep)
                        except MeasurementFailed as e:
                            failed = True
                            print(f"  FAILED: {e}", flush=True)
                            for name in system.log_names:
                                print(f"  --- {name}.log (tail) ---\n{workers.tail(name)}", flush=True)
                            break
                        results.setdefault((system.key, kind), []).append(res)
                        print(f"run {rep + 1}/{args.repeat}  {system.label:<26} {KIND_LABEL[kind]:<7} "
                              f"{res['e2e']:8,.0f} jobs/s end-to-end ({n} in {res['secs']:.2f} s)  "
                              f"processing {fmt_rate(res['proc'])}/s  enqueue {res['enq']:,.0f}/s", flush=True)
                finally:
                    system.stop(workers)
        print_table(ctx, results, systems, skipped)
        return 1 if failed else 0
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr, flush=True)
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
