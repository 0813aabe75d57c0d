"""Search on a seeded catalog: indexing throughput, and p50/p95 of keyword and hybrid queries through
GET /api/v1/search, on the embedded default (SQLite FTS5) and on PostgreSQL, side by side.

Targets at 100k models: keyword p95 <= 20 ms, hybrid p95 <= 50 ms on the embedded default; keyword
p95 <= 30 ms, hybrid p95 <= 60 ms on PostgreSQL.

    .venv/bin/python bench/search.py                      # 100k models, both backends
    .venv/bin/python bench/search.py --models 20000 --backend sqlite --queries 100
    .venv/bin/python bench/search.py --embed-all          # embed every document (slow on a CPU)

The catalog comes from bench/api.py's seeder. Every document is indexed for keywords; MiniLM
embeddings are computed for --embed documents (default 2000) to measure embedding throughput, and
the other documents get random unit vectors of the same shape, so that hybrid queries scan a full
100k x 384 matrix (their relevance is not the point here; tests/functional/test_search.py checks it).
Each backend runs in a child process (settings are process-wide). Each hybrid phrase is new (query
vectors are cached per process); the SQLite file is read through before each kind of query (see
warm_page_cache)."""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = str(ROOT)

from bench.api import WORDS, configure_env, percentile, pg_admin, seed  # noqa: E402

TARGETS = {"sqlite": (20.0, 50.0), "postgres": (30.0, 60.0)}  # p95 ms: keyword, hybrid
PHRASES = ["portrait of a woman in armor", "cinematic fantasy landscape", "anime character style",
           "photorealistic detailed lighting", "rainy neon city at night", "cute animal illustration",
           "vintage film photo", "sci-fi spaceship concept art"]
SCENE = ("rainy foggy sunny misty quiet busy ancient futuristic neon golden dark bright city forest village "
         "harbor desert castle street market garden temple bridge portrait landscape night dawn winter "
         "summer woman knight robot cat dragon ship").split()


def phrase(rng: random.Random) -> str:
    """A new phrase each time (queries' vectors are cached per process, so repeats would not embed)."""
    return " ".join(rng.sample(SCENE, rng.randint(3, 5))) + f" {rng.choice(PHRASES)}"


def parent(args) -> int:
    results = {}
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        fd, name = tempfile.mkstemp(prefix="atelier-bench-search-", suffix=".json")
        os.close(fd)
        cmd = [sys.executable, __file__, "--child", "--backend", backend, "--models", str(args.models),
               "--queries", str(args.queries), "--embed", str(args.embed), "--pg-url", args.pg_url,
               "--keep-db", args.keep_db,
               "--json-out", name] + (["--embed-all"] if args.embed_all else [])
        print(f"\n===== {backend} =====", flush=True)
        subprocess.call(cmd)
        out = Path(name)
        results[backend] = json.loads(out.read_text()) if out.stat().st_size else None
        out.unlink(missing_ok=True)
    print(f"\n{'backend':<10}{'models':>8}{'index docs/s':>14}{'embed docs/s':>14}  "
          f"{'query':<22}{'p50 ms':>8}{'p95 ms':>8}{'target':>8}   engine alone: p50 / p95 ms")
    for backend, r in results.items():
        if not r:
            print(f"{backend:<10} failed")
            continue
        for i, (kind, (p50, p95)) in enumerate(r["latency"].items()):
            target = TARGETS[backend][0 if kind.startswith("keyword") else 1]
            head = (f"{backend:<10}{r['models']:>8}{r['index_docs_s']:>14.0f}{r['embed_docs_s']:>14.1f}" if i == 0
                    else " " * 46)
            verdict = "ok" if p95 <= target else "MISSED"
            e50, e95 = r["engine"][kind]
            engine_verdict = "ok" if e95 <= target else "MISSED"
            print(f"{head}  {kind:<22}{p50:>8.1f}{p95:>8.1f}{target:>6.0f} {verdict:<7}  {e50:6.1f} / {e95:6.1f} "
                  f"{engine_verdict}")
    return 0


def child(args) -> int:
    home = Path(tempfile.mkdtemp(prefix="atelier-bench-search-"))
    args.pg_db, args.redis_url = args.keep_db or f"atelier_bench_{uuid.uuid4().hex[:10]}", ""
    try:
        if args.backend == "postgres" and not (args.keep_db and database_exists(args.pg_url, args.pg_db)):
            pg_admin(args.pg_url, f"CREATE DATABASE {args.pg_db}")
        configure_env(args, home)
        result = run(args)
        Path(args.json_out).write_text(json.dumps(result))
        return 0
    finally:
        from models_db.redis_store import stop_embedded
        stop_embedded()
        if args.backend == "postgres":
            from models_db import db as database
            database.db.close_all()
            if not args.keep_db:
                pg_admin(args.pg_url, f"DROP DATABASE IF EXISTS {args.pg_db} WITH (FORCE)")
        shutil.rmtree(home, ignore_errors=True)


def database_exists(base_url: str, name: str) -> bool:
    import psycopg2
    conn = psycopg2.connect(base_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cur.fetchone() is not None
    finally:
        conn.close()


def run(args) -> dict:
    import numpy as np
    from tqdm import tqdm

    import settings
    settings.reload()
    from gpu.embeddings import DIM, encode
    from models_db import db as database
    from models_db import search
    from models_db.migrations import upgrade
    from models_db.search import documents
    upgrade()
    rng = random.Random(7)
    if args.keep_db and search.get_backend().count() == args.models:
        return measure(args, rng, 0.0, 0.0, 0)  # seeded and indexed by an earlier run
    seed(database.db, args.models, rng, settings.get().is_sqlite)
    backend = search.get_backend()
    embed_left = args.models if args.embed_all else args.embed
    index_s = embed_s = 0.0
    embedded = 0
    np_rng = np.random.default_rng(7)
    with tqdm(total=args.models, unit="doc", desc=f"indexing ({backend.name})", mininterval=1) as bar:
        for ids in documents.all_model_ids(500):
            docs, _ = documents.build(ids)
            texts = {d["id"]: documents.embedding_text(d) for d in docs}
            take = min(embed_left, len(docs))
            started = time.perf_counter()
            real = encode(list(texts.values())[:take]) if take else np.zeros((0, DIM), np.float32)
            embed_s += time.perf_counter() - started
            embedded, embed_left = embedded + take, embed_left - take
            fill = np_rng.standard_normal((len(docs) - take, DIM)).astype(np.float32)
            fill /= np.linalg.norm(fill, axis=1, keepdims=True)
            started = time.perf_counter()
            backend.upsert(docs, (texts, np.vstack([real, fill])))
            index_s += time.perf_counter() - started
            bar.update(len(ids))
    if not settings.get().is_sqlite:
        database.db.execute_sql("VACUUM ANALYZE")
    else:
        database.db.execute_sql("ANALYZE")
    return measure(args, rng, index_s, embed_s, embedded)


def measure(args, rng: random.Random, index_s: float, embed_s: float, embedded: int) -> dict:
    from models_db import search
    from web import create_app
    client = create_app().test_client()
    words = [w for w in WORDS if len(w) >= 4]
    kinds = {
        "keyword 1 word": lambda: f"q={rng.choice(words)}&mode=keyword",
        "keyword 2 words": lambda: f"q={rng.choice(words)}+{rng.choice(words)}&mode=keyword",
        "keyword prefix": lambda: f"q={rng.choice(words)[:3]}&mode=keyword",
        "keyword misspelled": lambda: f"q={misspell(rng.choice(words), rng)}&mode=keyword",
        "hybrid phrase": lambda: f"q={phrase(rng).replace(' ', '+')}",
        "hybrid 1 word": lambda: f"q={rng.choice(words)}",
    }
    for make in kinds.values():  # warm-up: model load, vector matrix, caches
        for _ in range(5):
            client.get(f"/api/v1/search?{make()}&limit=20")
    latency, engine = {}, {}
    for kind, make in kinds.items():
        warm_page_cache()
        times, inside = [], []
        for _ in range(args.queries):
            query = make()
            started = time.perf_counter()
            response = client.get(f"/api/v1/search?{query}&limit=20")
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.get_json()
            started = time.perf_counter()  # the same query, the search engine alone (no JSON of the hits)
            search.search(engine_query(query))
            inside.append((time.perf_counter() - started) * 1000)
        latency[kind] = (percentile(sorted(times), 50), percentile(sorted(times), 95))
        engine[kind] = (percentile(sorted(inside), 50), percentile(sorted(inside), 95))
        print(f"{kind:<22} API p50 {latency[kind][0]:6.1f} ms  p95 {latency[kind][1]:6.1f} ms   "
              f"engine p50 {engine[kind][0]:6.1f} ms  p95 {engine[kind][1]:6.1f} ms", flush=True)
    return {"models": args.models, "index_docs_s": args.models / index_s if index_s else 0.0,
            "embed_docs_s": embedded / embed_s if embed_s else 0.0, "latency": latency, "engine": engine}


def warm_page_cache() -> None:
    """Reads the SQLite file through once: a serving host keeps its database in the page cache, but some
    machines (VMs with a reclaim daemon) drop file pages idle for a minute, and seeding took longer."""
    import settings
    if settings.get().is_sqlite:
        with open(settings.get().database_url.removeprefix("sqlite:///"), "rb") as f:
            while f.read(1 << 24):
                pass


def engine_query(query: str):
    """The SearchQuery that GET /api/v1/search builds for these parameters (facets and highlights on)."""
    from urllib.parse import parse_qs

    from models_db.search import SearchQuery
    args = parse_qs(query)
    return SearchQuery(text=args["q"][0], sort="Relevance", limit=20, hybrid=args.get("mode") != ["keyword"])


def misspell(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1:]  # drop one letter


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=100_000)
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--embed", type=int, default=2000, help="documents embedded with MiniLM (the rest random)")
    p.add_argument("--embed-all", action="store_true")
    p.add_argument("--pg-url", default="postgresql://127.0.0.1:5432/test")
    p.add_argument("--keep-db", default="", metavar="NAME",
                   help="PostgreSQL: seed and index database NAME once and keep it; later runs only measure")
    p.add_argument("--child", action="store_true")
    p.add_argument("--json-out", default="")
    args = p.parse_args()
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
