"""Catalog API latency on a seeded catalog: p50/p95/max of the model listing and of the by-hash lookup,
on the embedded default (SQLite) and on PostgreSQL, side by side in one run.

Targets: GET /api/v1/models?limit=100 p95 <= 30 ms; by-hash p95 <= 5 ms.

    .venv/bin/python bench/api.py                                   # 100k models, both backends
    .venv/bin/python bench/api.py --models 10000 --backend sqlite --requests 100
    .venv/bin/python bench/api.py --pg-url postgresql://user@db:5432/postgres
    .venv/bin/python bench/api.py --backend postgres --breakdown --explain   # where the time goes

Each backend runs in a child process of this script (`bench/api.py --child --backend X ...`), since
settings and the database handle are process-wide. A child makes a temporary ATELIER_HOME (never
./var), and for PostgreSQL a fresh database atelier_bench_<random> next to --pg-url's (dropped at the
end), then: migrations.upgrade(), seeds N models (N/20 creators, 1-2 versions per model, 1 file per
version with its 5 hashes, tags) with peewee insert_many, runs ANALYZE (VACUUM ANALYZE on PostgreSQL),
and times requests through Flask's test client on web.create_app(): in-process, so the figures are the
app and its database, not the network or a WSGI server. After a warm-up the endpoints are requested
in turn, K times each:

  newest      GET /api/v1/models?limit=100                    (default sort: Newest)
  downloads   GET /api/v1/models?limit=100&sort=Most Downloaded
  cursor      cursor walks: from a random point of the Newest order, follow metadata.nextCursor
  filtered    GET /api/v1/models?limit=100&types=LORA&baseModels=SDXL 1.0
  by-hash     GET /api/v1/model-versions/by-hash/<existing hash, random type, random letter case>

--images N adds N showcase images per published version (the listing then carries them too; default 0).
Every response is checked (200, non-empty items; by-hash: the version holds the asked hash) outside
the timed section. Besides wall-clock p50/p95/max, "cpu p50" is this thread's CPU time per request, the
steadier figure on a shared machine (a WARNING says when the load average showed competition). The
parent prints one table for all backends. This is a benchmark, not a test.
Options for finding where time goes: --breakdown (time per phase: connect, each query helper, JSON
building, serialisation), --explain (query plans of one request per endpoint), --profile ENDPOINT
(cProfile), and --sql "CREATE INDEX ..." (run SQL after seeding, to try an index; repeatable).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = str(ROOT)

LIST_TARGET_MS, HASH_TARGET_MS = 30.0, 5.0
ENDPOINTS = {  # key -> (label, p95 target in ms)
    "newest": ("GET /api/v1/models?limit=100 (Newest)", LIST_TARGET_MS),
    "downloads": ("  …&sort=Most Downloaded", LIST_TARGET_MS),
    "cursor": ("  …&cursor=<nextCursor> (walk)", LIST_TARGET_MS),
    "filtered": ("  …&types=LORA&baseModels=SDXL 1.0", LIST_TARGET_MS),
    "by-hash": ("GET /api/v1/model-versions/by-hash/<h>", HASH_TARGET_MS),
}


# --------------------------------------------------------------------------------------------------
# Parent: one child per backend, then one table.
# --------------------------------------------------------------------------------------------------

def pg_admin(base_url: str, sql: str) -> None:
    import psycopg2
    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def pg_url_for(base_url: str, dbname: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def parent(args) -> int:
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results, failed = {}, False
    for backend in backends:
        fd, name = tempfile.mkstemp(prefix=f"atelier-bench-{backend}-", suffix=".json")
        os.close(fd)
        out = Path(name)
        pg_db = f"atelier_bench_{uuid.uuid4().hex[:10]}" if backend == "postgres" else ""
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--backend", backend,
               "--models", str(args.models), "--requests", str(args.requests), "--warmup", str(args.warmup),
               "--walk-pages", str(args.walk_pages), "--seed", str(args.seed), "--images", str(args.images),
               "--pg-url", args.pg_url,
               "--redis-url", args.redis_url, "--json-out", str(out)]
        if pg_db:
            cmd += ["--pg-db", pg_db]
        for flag in ("breakdown", "explain"):
            if getattr(args, flag):
                cmd.append(f"--{flag}")
        if args.profile:
            cmd += ["--profile", args.profile]
        for sql in args.sql or []:
            cmd += ["--sql", sql]
        print(f"\n===== {backend} =====", flush=True)
        try:
            rc = subprocess.call(cmd)
        finally:
            if pg_db:  # the child drops it; this is for a child that was killed
                try:
                    pg_admin(args.pg_url, f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)")
                except Exception as exc:  # noqa: BLE001
                    print(f"could not drop {pg_db}: {exc}", file=sys.stderr)
        try:
            results[backend] = json.loads(out.read_text()) if out.stat().st_size else None
        finally:
            out.unlink(missing_ok=True)
        if rc != 0 or not results[backend]:
            print(f"{backend}: child exited with status {rc}", file=sys.stderr)
            failed = True
    print_table(results, args)
    return 1 if failed else 0


def print_table(results: dict, args) -> None:
    done = {b: r for b, r in results.items() if r}
    if not done:
        return
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    print(f"\n===== summary: {args.models} models{f' ({args.images} images per version)' if args.images else ''}, "
          f"{args.requests} requests per endpoint, Flask test client in-process, code at {rev} =====")
    for backend, r in done.items():
        print(f"{backend:<9} {r['database']}; seeded {r['counts']} in {r['seed_s']:.1f} s "
              f"(+ ANALYZE {r['analyze_s']:.1f} s); CPU reference job "
              f"{r['cpu_ref_ms'][0]:.2f}/{r['cpu_ref_ms'][1]:.2f} ms before/after; load average "
              f"{r['load'][0]:.2f}/{r['load'][1]:.2f} on {os.cpu_count()} CPUs"
              f"{' (BUSY MACHINE: p95 inflated)' if r['busy'] else ''}")
    print()
    head = (f"{'endpoint':<40} {'backend':<9} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'cpu p50':>7}  "
            f"{'target p95':>10}  verdict")
    print(head)
    print("-" * len(head))
    for key, (label, target) in ENDPOINTS.items():
        for i, (backend, r) in enumerate(done.items()):
            s = r["stats"][key]
            verdict = ("MET" if s["p95"] <= target else "MISSED") + ("" if s["ok"] == s["n"] else
                                                                     f"  ({s['n'] - s['ok']} bad responses)")
            print(f"{label if i == 0 else '':<40} {backend:<9} {s['p50']:7.2f} {s['p95']:7.2f} {s['max']:7.2f} "
                  f"{s['cpu50']:7.2f}  {'<= %g ms' % target:>10}  {verdict}")
    print("cpu p50: median CPU time of the benchmark's thread per request (the app's own work; on PostgreSQL "
          "the server's share is not in it). Wall-clock p50/p95/max include everything.")


# --------------------------------------------------------------------------------------------------
# Child: one backend.
# --------------------------------------------------------------------------------------------------

def configure_env(args, home: Path) -> None:
    """Before `import settings`: everything this process reads comes from here, nothing from ./var."""
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "PUBLIC_URL", "SECRET_KEY", "SOLR_URL"):
        os.environ.pop(name, None)
    os.environ.update(ATELIER_HOME=str(home), SECRET_KEY="bench-secret", LOG_LEVEL="WARNING",
                      QUEUE_NAMESPACE=f"atelier-bench-{uuid.uuid4().hex[:10]}")
    if args.backend == "postgres":
        os.environ["DATABASE_URL"] = pg_url_for(args.pg_url, args.pg_db)
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url


@contextlib.contextmanager
def environment_from_env(name: str):
    """A fresh home (and PostgreSQL database, when DATABASE_URL names a server) for a bench run in this process,
    configured from DATABASE_URL / REDIS_URL; everything is removed afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    env = SimpleNamespace(backend="postgres" if url.startswith("postgres") else "sqlite", pg_url=url,
                          pg_db=f"atelier_bench_{uuid.uuid4().hex[:10]}", redis_url=os.environ.get("REDIS_URL", ""))
    home = Path(tempfile.mkdtemp(prefix=f"atelier-bench-{name}-"))
    try:
        if env.backend == "postgres":
            pg_admin(url, f"CREATE DATABASE {env.pg_db}")
        configure_env(env, home)
        yield env
    finally:
        if "models_db.db" in sys.modules:
            from models_db import db as database
            database.db.close_all()
        if "settings" in sys.modules:
            from models_db.redis_store import stop_embedded
            stop_embedded()
        if env.backend == "postgres":
            pg_admin(url, f"DROP DATABASE IF EXISTS {env.pg_db} WITH (FORCE)")
        shutil.rmtree(home, ignore_errors=True)


def child(args) -> int:
    home = Path(tempfile.mkdtemp(prefix="atelier-bench-api-"))
    args.pg_db = args.pg_db or f"atelier_bench_{uuid.uuid4().hex[:10]}"
    created_pg = False
    try:
        if args.backend == "postgres":
            pg_admin(args.pg_url, f"CREATE DATABASE {args.pg_db}")
            created_pg = True
        configure_env(args, home)
        return run_backend(args)
    finally:
        try:
            from models_db.redis_store import stop_embedded
            if "settings" in sys.modules:
                stop_embedded()
        except Exception:  # noqa: BLE001
            pass
        if "models_db.db" in sys.modules:
            from models_db import db as database
            if not database.db.is_closed():
                database.db.close()
        if created_pg:
            pg_admin(args.pg_url, f"DROP DATABASE IF EXISTS {args.pg_db} WITH (FORCE)")
        shutil.rmtree(home, ignore_errors=True)


def run_backend(args) -> int:
    import settings
    settings.reload()
    from models_db import db as database
    from models_db.migrations import upgrade
    upgrade()
    db = database.db
    db.connect(reuse_if_open=True)
    if settings.get().is_sqlite:
        import sqlite3
        dbinfo = f"SQLite {sqlite3.sqlite_version} (file in a temp ATELIER_HOME)"
    else:
        version = db.execute_sql("SHOW server_version").fetchone()[0]
        dbinfo = f"PostgreSQL {version} (database {args.pg_db})"
    print(f"database: {dbinfo}", flush=True)

    seeded = seed(db, args.models, random.Random(args.seed), settings.get().is_sqlite, args.images)
    start = time.perf_counter()
    db.execute_sql("ANALYZE" if settings.get().is_sqlite else "VACUUM ANALYZE")
    analyze_s = time.perf_counter() - start
    print(f"seeded {seeded['counts']} in {seeded['seed_s']:.1f} s; "
          f"{'ANALYZE' if settings.get().is_sqlite else 'VACUUM ANALYZE'} {analyze_s:.1f} s", flush=True)
    for sql in args.sql or []:
        start = time.perf_counter()
        db.execute_sql(sql)
        print(f"ran --sql {sql!r} in {time.perf_counter() - start:.2f} s", flush=True)
    db.close()  # from here on the app opens and closes its connection per request, as in production

    from web import create_app
    app = create_app()
    client = app.test_client()
    bench = Requests(client, seeded, random.Random(args.seed + 1), args.walk_pages)
    counts, seed_s = seeded["counts"], seeded["seed_s"]
    del seeded
    gc.collect()

    cpu_before = cpu_reference_ms()
    for key in ENDPOINTS:  # warm-up (and one response each to show the sizes)
        for _ in range(args.warmup):
            bench.request(key)
    print("response sizes: " + ", ".join(f"{k} {len(bench.last_body[k]) // 1024} KiB" for k in ENDPOINTS))

    times: dict[str, list[float]] = {k: [] for k in ENDPOINTS}
    cpu: dict[str, list[float]] = {k: [] for k in ENDPOINTS}
    ok: dict[str, int] = {k: 0 for k in ENDPOINTS}
    load_before = os.getloadavg()[0]
    problems: list[str] = []
    for _ in range(args.requests):  # the endpoints in turn, so none has the caches to itself
        for key in ENDPOINTS:
            elapsed, problem = bench.request(key)
            times[key].append(elapsed * 1000)
            cpu[key].append(bench.last_cpu * 1000)
            if problem:
                problems.append(f"{key}: {problem}")
            else:
                ok[key] += 1

    load_after = os.getloadavg()[0]
    cpu_after = cpu_reference_ms()
    print(f"CPU reference job (bench/api.py cpu_reference_ms): {cpu_before:.2f} ms before, "
          f"{cpu_after:.2f} ms after the timed requests; load average {load_before:.2f} before, "
          f"{load_after:.2f} after, on {os.cpu_count()} CPUs")
    busy = max(load_before, load_after) >= (os.cpu_count() or 1)
    if busy or cpu_after > 1.3 * cpu_before:
        print("WARNING: other processes competed for the CPU (or the machine slowed down) during the run: "
              "p95/max are inflated by that; cpu p50 (this thread's CPU time) is the steadier figure")
    stats = {}
    print(f"\n{'endpoint':<10} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'mean ms':>8} "
          f"{'cpu p50':>8}  target p95")
    for key, (label, target) in ENDPOINTS.items():
        t = sorted(times[key])
        s = {"n": len(t), "ok": ok[key], "p50": statistics.median(t), "p95": percentile(t, 95),
             "max": t[-1], "mean": statistics.fmean(t), "cpu50": statistics.median(cpu[key])}
        stats[key] = s
        print(f"{key:<10} {s['n']:>5} {s['p50']:8.2f} {s['p95']:8.2f} {s['max']:8.2f} {s['mean']:8.2f} "
              f"{s['cpu50']:8.2f}  <= {target:g} ms: {'MET' if s['p95'] <= target else 'MISSED'}")
    for line in problems[:10]:
        print(f"CHECK FAILED {line}")
    if len(problems) > 10:
        print(f"... and {len(problems) - 10} more failed checks")

    if args.breakdown:
        breakdown(bench, db, min(args.requests, 100))
    if args.explain:
        explain(bench, db, settings.get().is_sqlite)
    if args.profile:
        profile(bench, args.profile, min(args.requests, 100))

    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "database": dbinfo, "counts": counts, "seed_s": seed_s,
            "analyze_s": analyze_s, "cpu_ref_ms": [cpu_before, cpu_after],
            "load": [load_before, load_after], "busy": busy, "stats": stats}))
    return 1 if problems else 0


def cpu_reference_ms() -> float:
    """A fixed pure-Python job shaped like a listing response (build 100 nested dicts, encode them), best of
    15. Cloud VMs change speed from minute to minute: compare backends' figures only alongside this."""
    best = float("inf")
    for _ in range(15):
        start = time.perf_counter()
        items = [{"id": i, "name": f"model {i}", "description": "x" * 700, "stats": {"downloadCount": i * 7},
                  "tags": [f"tag {t}" for t in range(3)],
                  "modelVersions": [{"id": i * 2 + v, "name": f"v{v}", "description": "y" * 500,
                                     "files": [{"id": i, "hashes": {k: "ABCDEF0123" * 6 for k in "abcde"},
                                                "downloadUrl": f"http://localhost/api/download/models/{i}"}]}
                                    for v in range(2)]} for i in range(100)]
        json.dumps({"items": items})
        best = min(best, time.perf_counter() - start)
    return best * 1000


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile (a value that was actually measured)."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --------------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------------

TYPE_WEIGHTS = {"LORA": 55, "Checkpoint": 14, "TextualInversion": 8, "LoCon": 6, "DoRA": 2, "Controlnet": 2,
                "Workflows": 2, "VAE": 1, "Upscaler": 1, "MotionModule": 1, "Hypernetwork": 1, "Poses": 1,
                "Wildcards": 1, "AestheticGradient": 0.5, "Other": 4.5}
BASE_WEIGHTS = {"SD 1.5": 28, "SDXL 1.0": 22, "Pony": 16, "Illustrious": 12, "Flux.1 D": 10, "NoobAI": 3,
                "SD 1.4": 1, "SD 2.1": 1, "SDXL Turbo": 1, "SDXL Lightning": 1, "Flux.1 S": 1, "SD 3.5": 1,
                "SD 3": 0.5, "SD 1.5 LCM": 0.5, "SD 2.0": 0.5, "Other": 1.5}
SIZES = {"Checkpoint": (2_000_000_000, 7_000_000_000), "TextualInversion": (10_000, 300_000),
         "VAE": (80_000_000, 350_000_000), "Controlnet": (700_000_000, 2_500_000_000),
         "Upscaler": (10_000_000, 70_000_000), "MotionModule": (400_000_000, 1_800_000_000)}
WORDS = ("anime style character portrait photorealistic detailed lighting cinematic fantasy armor dress "
         "landscape city night neon cyberpunk watercolor sketch ink painting concept art pose hands eyes "
         "hair outfit background realistic cartoon pixel retro vintage film grain soft hard shadows colorful "
         "pastel dark moody epic dragon knight witch robot mecha car flower forest ocean mountain sky").split()
TAG_BASE = ("anime character style concept clothing photorealistic woman man landscape sci-fi fantasy "
            "celebrity base model poses tool buildings vehicle animal objects horror cartoon 3d photography "
            "game character armor sexy cute chibi meme retro comics pixel art").split()
CREATED_FROM = datetime(2022, 11, 1)


IMAGE_META = json.dumps({"prompt": "masterpiece, best quality, 1girl, solo, looking at viewer, detailed background",
                         "negativePrompt": "lowres, bad anatomy, bad hands, text, error, missing fingers",
                         "sampler": "DPM++ 2M Karras", "cfgScale": 7, "steps": 30, "seed": 1234567890,
                         "Size": "832x1216", "Model": "some_checkpoint_v2"})


def seed(db, n_models: int, rng: random.Random, sqlite: bool, images_per_version: int = 0) -> dict:
    from tqdm import tqdm
    from models_db.accounts import User
    from models_db.catalog import Model, ModelFile, ModelFileHash, ModelTag, ModelVersion, Tag

    start = time.perf_counter()
    n_users = max(1, n_models // 20)
    types, type_w = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
    bases, base_w = list(BASE_WEIGHTS), list(BASE_WEIGHTS.values())
    descriptions = ["<p>" + " ".join(rng.choices(WORDS, k=int(min(800, rng.lognormvariate(4.3, 0.9)))))
                    + "</p>" for _ in range(400)]
    tag_names = list(dict.fromkeys(TAG_BASE + [f"{a} {b}" for a in WORDS for b in WORDS if a != b]))[:3000]
    tag_cum, acc = [], 0.0
    for rank in range(len(tag_names)):
        acc += 1 / (rank + 1)  # Zipf: a few tags on many models, a long tail on few
        tag_cum.append(acc)
    span = (datetime(2025, 11, 1) - CREATED_FROM).total_seconds()

    users = [(i, f"creator_{i:06d}", f"https://img.example/avatars/{i}.png" if rng.random() < 0.7 else None,
              "user", True, CREATED_FROM) for i in range(1, n_users + 1)]
    models, versions, files, hashes, model_tags, images = [], [], [], [], [], []
    published_hashes, cursor_points = [], []
    version_id = 0
    for mid in range(1, n_models + 1):
        mtype = rng.choices(types, type_w)[0]
        base = rng.choices(bases, base_w)[0]
        status = "Published" if rng.random() < 0.92 else "Draft"
        created = CREATED_FROM + timedelta(seconds=rng.random() * span)
        published = created + timedelta(seconds=rng.random() * 172800) if status == "Published" else None
        downloads = int(min(2_000_000, rng.lognormvariate(5, 2.2)))
        ratings = int(downloads * rng.random() * 0.02)
        nsfw = rng.random() < 0.2
        name = f"{' '.join(rng.choices(WORDS, k=rng.randint(1, 4))).title()} {mtype} {mid}"
        models.append((mid, name, rng.choice(descriptions), mtype, rng.randint(1, n_users), status, nsfw,
                       rng.choice((8, 16)) if nsfw else rng.choice((1, 1, 1, 2)), created, created,
                       published, downloads, int(downloads * rng.random() * 0.1), int(ratings * 0.9),
                       ratings // 20, int(ratings * rng.random() * 0.1), ratings,
                       round(rng.uniform(3.5, 5.0), 2) if ratings else 0.0))
        if published:
            cursor_points.append((published, mid))
        n_versions = 1 if rng.random() < 0.6 else 2
        for index in range(n_versions - 1, -1, -1):  # oldest first; index 0 is the newest
            version_id += 1
            vstatus = status
            if status == "Published" and index == 0 and n_versions == 2 and rng.random() < 0.1:
                vstatus = "Draft"  # a new version still being prepared
            vbase = base if rng.random() < 0.8 else rng.choices(bases, base_w)[0]
            vcreated = created + timedelta(days=(n_versions - 1 - index) * rng.uniform(1, 60))
            vdownloads = downloads // n_versions
            words = json.dumps(rng.sample(WORDS, rng.randint(1, 3))) if mtype in ("LORA", "LoCon", "DoRA",
                                                                                  "TextualInversion") else "[]"
            versions.append((version_id, mid, index, f"v{n_versions - index}.0", rng.choice(descriptions[:50]),
                             vbase, vstatus, models[-1][7], words, vcreated, vcreated,
                             published + timedelta(seconds=vcreated.timestamp() - created.timestamp())
                             if vstatus == "Published" else None, vdownloads, ratings // n_versions,
                             models[-1][-1], int(ratings * 0.9) // n_versions, ratings // 20 // n_versions))
            sha = rng.randbytes(32).hex()
            lo, hi = SIZES.get(mtype, (10_000_000, 300_000_000))
            fmt = "SafeTensor" if rng.random() < 0.9 else "PickleTensor"
            files.append((version_id, version_id, f"{name.replace(' ', '_')[:60]}_v{n_versions - index}"
                          f"{'.safetensors' if fmt == 'SafeTensor' else '.ckpt'}", "Model", sha,
                          rng.randint(lo, hi), "Ready", fmt, "full", rng.choice(("fp16", "fp16", "bf16", "fp32")),
                          True, "Success", "Success", vcreated, '{"tensors": 1132}', vcreated))
            file_hashes = {"SHA256": sha.upper(), "AutoV1": rng.randbytes(4).hex().upper(),
                           "AutoV2": sha[:10].upper(), "CRC32": rng.randbytes(4).hex().upper(),
                           "BLAKE3": rng.randbytes(32).hex().upper()}
            for htype, value in file_hashes.items():
                hashes.append((version_id, htype, value))
                if vstatus == "Published":
                    published_hashes.append((htype, value, version_id))
            for _ in range(images_per_version if vstatus == "Published" else 0):
                level = rng.choice((4, 8, 16)) if nsfw else rng.choice((1, 1, 1, 2))  # anonymous sees 1 and 2
                images.append((len(images) + 1, models[-1][4], version_id, "Ready", "image.jpeg",
                               rng.randbytes(32).hex(), "image/jpeg", 832, 1216, rng.randint(200_000, 2_000_000),
                               "UDQ]o;of00WB~qj[M{ay4nWBofWB", IMAGE_META if rng.random() < 0.8 else None, level,
                               vcreated))
        for tag in set(rng.choices(range(1, len(tag_names) + 1), cum_weights=tag_cum, k=rng.randint(0, 6))):
            model_tags.append((mid, tag))

    plan = [
        (User, [User.id, User.username, User.image, User.role, User.is_active, User.created_at], users),
        (Tag, [Tag.id, Tag.name], [(i + 1, t) for i, t in enumerate(tag_names)]),
        (Model, [Model.id, Model.name, Model.description, Model.type, Model.owner, Model.status, Model.nsfw,
                 Model.nsfw_level, Model.created_at, Model.updated_at, Model.published_at, Model.download_count,
                 Model.favorite_count, Model.thumbs_up_count, Model.thumbs_down_count, Model.comment_count,
                 Model.rating_count, Model.rating], models),
        (ModelVersion, [ModelVersion.id, ModelVersion.model, ModelVersion.index, ModelVersion.name,
                        ModelVersion.description, ModelVersion.base_model, ModelVersion.status,
                        ModelVersion.nsfw_level, ModelVersion.trained_words_json, ModelVersion.created_at,
                        ModelVersion.updated_at, ModelVersion.published_at, ModelVersion.download_count,
                        ModelVersion.rating_count, ModelVersion.rating, ModelVersion.thumbs_up_count,
                        ModelVersion.thumbs_down_count], versions),
        (ModelFile, [ModelFile.id, ModelFile.version, ModelFile.name, ModelFile.type, ModelFile.blob,
                     ModelFile.size_bytes, ModelFile.status, ModelFile.format, ModelFile.size_kind, ModelFile.fp,
                     ModelFile.primary, ModelFile.pickle_scan_result, ModelFile.virus_scan_result,
                     ModelFile.scanned_at, ModelFile.info_json, ModelFile.created_at], files),
        (ModelFileHash, [ModelFileHash.file, ModelFileHash.type, ModelFileHash.hash], hashes),
        (ModelTag, [ModelTag.model, ModelTag.tag], model_tags),
    ]
    if images:
        from models_db.images import Image
        plan.append((Image, [Image.id, Image.user, Image.model_version, Image.status, Image.filename, Image.blob,
                             Image.mime, Image.width, Image.height, Image.size_bytes, Image.blurhash,
                             Image.meta_json, Image.nsfw_level, Image.created_at], images))
    total = sum(len(rows) for _, _, rows in plan)
    with tqdm(total=total, unit="row", unit_scale=True, desc="seeding", mininterval=0.5) as bar:
        for table, fields, rows in plan:
            # SQLite allows 32766 bound parameters per statement; PostgreSQL gets 1000-row statements.
            batch = min(1000, 32000 // len(fields)) if sqlite else 1000
            bar.set_postfix_str(table._meta.table_name)
            with db.atomic():
                for i in range(0, len(rows), batch):
                    chunk = rows[i:i + batch]
                    table.insert_many(chunk, fields=fields).execute()
                    bar.update(len(chunk))
    if not sqlite:  # explicit ids were inserted: move the sequences past them
        for table, _, _ in plan:
            name = table._meta.table_name
            db.execute_sql(f"SELECT setval(pg_get_serial_sequence('\"{name}\"', 'id'), "
                           f"(SELECT COALESCE(MAX(id), 1) FROM \"{name}\"))")
    counts = {"users": len(users), "models": len(models), "versions": len(versions), "files": len(files),
              "hashes": len(hashes), "tags": len(tag_names), "model_tags": len(model_tags)}
    if images:
        counts["images"] = len(images)
    # Keep a sample only: a big heap of the bench's own tuples would make the app's GC passes slower.
    return {"seed_s": time.perf_counter() - start, "counts": counts,
            "published_hashes": rng.sample(published_hashes, min(20_000, len(published_hashes))),
            "cursor_points": rng.sample(cursor_points, min(20_000, len(cursor_points)))}


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------

class Requests:
    def __init__(self, client, seeded: dict, rng: random.Random, walk_pages: int):
        self.client, self.rng, self.walk_pages = client, rng, walk_pages
        self.hashes, self.points = seeded["published_hashes"], seeded["cursor_points"]
        self.walk_url, self.walk_left = None, 0
        self.last_body: dict[str, bytes] = {}
        self.last_cpu = 0.0  # CPU time of this thread during the last request: the app's own share

    def url(self, key: str) -> tuple[str, str | None, int | None]:
        """(url, hash asked, version expected) for the next request of this endpoint."""
        if key == "newest":
            return "/api/v1/models?limit=100", None, None
        if key == "downloads":
            return "/api/v1/models?limit=100&sort=" + quote("Most Downloaded"), None, None
        if key == "filtered":
            return "/api/v1/models?limit=100&types=LORA&baseModels=" + quote("SDXL 1.0"), None, None
        if key == "cursor":
            if not self.walk_url or self.walk_left <= 0:
                from models_db.cursors import encode_keyset
                published, mid = self.rng.choice(self.points)  # start a walk somewhere in the Newest order
                self.walk_url = "/api/v1/models?limit=100&cursor=" + encode_keyset(published, mid)
                self.walk_left = self.walk_pages
            return self.walk_url, None, None
        htype, value, version_id = self.rng.choice(self.hashes)
        case = self.rng.randrange(3)
        asked = value.lower() if case == 0 else value if case == 1 else "".join(
            c.lower() if self.rng.random() < 0.5 else c for c in value)
        return f"/api/v1/model-versions/by-hash/{asked}", asked, version_id

    def request(self, key: str) -> tuple[float, str | None]:
        url, asked, version_id = self.url(key)
        start, cpu_start = time.perf_counter(), time.thread_time()
        response = self.client.get(url)
        elapsed = time.perf_counter() - start
        self.last_cpu = time.thread_time() - cpu_start
        self.last_body[key] = response.data
        return elapsed, self.check(key, url, response, asked, version_id)

    def check(self, key, url, response, asked, version_id) -> str | None:
        if response.status_code != 200:
            return f"{url} -> {response.status_code} {response.data[:200]!r}"
        body = response.get_json()
        if asked is not None:
            found = {h for f in body.get("files", []) for h in f["hashes"].values()}
            if asked.upper() not in found and body.get("id") != version_id:
                return f"{url} -> version {body.get('id')} without that hash"
            return None
        if not body.get("items"):
            return f"{url} -> no items"
        if key == "cursor":
            nxt = body["metadata"].get("nextCursor")
            self.walk_left -= 1
            self.walk_url = f"/api/v1/models?limit=100&cursor={nxt}" if nxt else None
        return None


# --------------------------------------------------------------------------------------------------
# Where the time goes
# --------------------------------------------------------------------------------------------------

def breakdown(bench: Requests, db, n: int) -> None:
    """Mean ms per request spent in each phase, timed by wrapping the functions the views call."""
    from models_db import catalog_queries as q
    from web import catalog as views

    spent: dict[str, float] = defaultdict(float)
    queries = [0]
    active: set[str] = set()
    restore = []

    def wrap(owner, name, label):
        original = getattr(owner, name)

        def timed(*a, **k):
            if label in active:  # nested call of the same phase: counted by the outer one
                return original(*a, **k)
            active.add(label)
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                spent[label] += time.perf_counter() - start
                active.discard(label)
        setattr(owner, name, timed)
        restore.append(lambda: setattr(owner, name, original))

    conn = db.obj
    for name in ("list_models", "versions_for", "files_for", "tags_for", "version_ids_by_hash", "model_rows"):
        wrap(q, name, f"q.{name}")
    wrap(views, "model_json", "build dicts (model_json/version_json)")
    wrap(views, "version_json", "build dicts (model_json/version_json)")
    wrap(views, "jsonify", "jsonify (serialise)")
    if hasattr(views, "showcase"):
        wrap(views, "showcase", "showcase images query")
    wrap(conn, "connect", "db connect")
    wrap(conn, "close", "db close")
    original_execute = conn.execute_sql

    def counting(*a, **k):
        queries[0] += 1
        return original_execute(*a, **k)
    conn.execute_sql = counting
    restore.append(lambda: conn.__dict__.pop("execute_sql", None))
    try:
        print(f"\nbreakdown: mean ms per request over {n} requests (\"rest\": Flask, the test client, "
              "the inline version query of by-hash)")
        for key in ENDPOINTS:
            spent.clear()
            queries[0] = 0
            total = 0.0
            for _ in range(n):
                elapsed, _problem = bench.request(key)
                total += elapsed
            parts = sorted(spent.items(), key=lambda kv: -kv[1])
            rest = total - sum(spent.values())
            line = ", ".join(f"{label} {v / n * 1000:.2f}" for label, v in parts)
            print(f"  {key:<10} total {total / n * 1000:6.2f} ms, {queries[0] / n:.0f} queries: {line}, "
                  f"rest {rest / n * 1000:.2f}")
    finally:
        for undo in reversed(restore):
            undo()
        conn.__dict__.pop("connect", None)
        conn.__dict__.pop("close", None)


def explain(bench: Requests, db, sqlite: bool) -> None:
    """Plans of the queries one request of each endpoint sends (EXPLAIN ANALYZE on PostgreSQL)."""
    conn = db.obj
    captured: list[tuple[str, tuple]] = []
    original = conn.execute_sql

    def capture(sql, params=None, *a, **k):
        captured.append((sql, tuple(params or ())))
        return original(sql, params, *a, **k)
    for key in ENDPOINTS:
        captured.clear()
        conn.execute_sql = capture
        try:
            bench.request(key)
        finally:
            conn.__dict__.pop("execute_sql", None)
        print(f"\n--- explain: {key} ({len(captured)} queries)")
        db.connect(reuse_if_open=True)
        try:
            for sql, params in captured:
                if not sql.lstrip().upper().startswith("SELECT"):
                    continue
                print(f"SQL: {sql[:400]}{'…' if len(sql) > 400 else ''}  [{len(params)} params]")
                prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, BUFFERS) "
                for row in db.execute_sql(prefix + sql, params).fetchall():
                    print("    " + " | ".join(str(c) for c in (row[-1:] if sqlite else row)))
        finally:
            db.close()


def profile(bench: Requests, key: str, n: int) -> None:
    import cProfile
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        bench.request(key)
    prof.disable()
    print(f"\n--- cProfile of {n} requests of {key} (cumulative)")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    pstats.Stats(prof).sort_stats("tottime").print_stats(20)


# --------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=100_000, help="models to seed (default 100000)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per endpoint first (default 20)")
    parser.add_argument("--walk-pages", type=int, default=5, help="pages per cursor walk (default 5)")
    parser.add_argument("--pg-url", default="postgresql://127.0.0.1:5432/test",
                        help="PostgreSQL to create the temporary database in (default %(default)s)")
    parser.add_argument("--redis-url", default="",
                        help="REDIS_URL for the app (default: embedded redis-server in the temp home; "
                             "the requests measured don't use Redis)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the catalog (default 1)")
    parser.add_argument("--images", type=int, default=0,
                        help="showcase images per published version (default 0: the catalog without images)")
    parser.add_argument("--sql", action="append", help="SQL to run after seeding (e.g. CREATE INDEX ...); repeatable")
    parser.add_argument("--breakdown", action="store_true", help="time per phase of each endpoint")
    parser.add_argument("--explain", action="store_true", help="query plans of one request per endpoint")
    parser.add_argument("--profile", choices=list(ENDPOINTS), help="cProfile this endpoint")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pg-db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--json-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.backend == "both":
            parser.error("--child runs one backend")
        return child(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
