"""Search relevance on a realistic catalog: nDCG@10, MRR@10 and recall@5 of Atelier's keyword search,
its hybrid search (keywords fused with MiniLM neighbours), and a plain BM25 baseline over the same text,
on the embedded default (SQLite FTS5) and on PostgreSQL, in one run.

    .venv/bin/python bench/relevance.py                       # both backends
    .venv/bin/python bench/relevance.py --backend sqlite --show-misses

The set is bench/relevance/catalog.jsonl (models as creators describe them: names, tags, trigger words,
version and file names, descriptions) and bench/relevance/queries.jsonl (queries of several kinds with
graded judgements: 3 what the searcher wants, 2 relevant, 1 partly relevant). Every model is imported
through `atelier import-model`'s code (stored, hashed, scanned, published) and indexed by the index
queue's flush, with real embeddings.

The baseline is what a plain full-text engine does: one FTS5 table (porter stemmer, diacritics folded)
of every field's text, the query's words OR-ed and ranked by bm25(). Metrics: nDCG@10 with gain
2^grade - 1; MRR@10 of the first judged result; recall@5 = judged results in the top 5 / min(5, judged).
Target: hybrid MRR@10 >= 0.9 and recall@5 >= 0.9, each at least 0.1 above the baseline; no query with a
judged model returns nothing."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # bench/queue.py must not shadow the standard queue module

from bench.api import configure_env, pg_admin  # noqa: E402

DATA = ROOT / "bench" / "relevance"
MRR_TARGET, RECALL_TARGET, MARGIN = 0.9, 0.9, 0.1
SYSTEMS = ("bm25", "keyword", "hybrid")


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- metrics -------------------------------------------------------------------------------------------

def ndcg(ranked: list[str], grades: dict[str, int], k: int = 10) -> float:
    gain = sum((2 ** grades.get(key, 0) - 1) / math.log2(n + 2) for n, key in enumerate(ranked[:k]))
    ideal = sum((2 ** g - 1) / math.log2(n + 2) for n, g in enumerate(sorted(grades.values(), reverse=True)[:k]))
    return gain / ideal if ideal else 0.0


def reciprocal_rank(ranked: list[str], grades: dict[str, int], k: int = 10) -> float:
    return next((1.0 / (n + 1) for n, key in enumerate(ranked[:k]) if grades.get(key, 0) > 0), 0.0)


def recall(ranked: list[str], grades: dict[str, int], k: int = 5) -> float:
    judged = [key for key, g in grades.items() if g > 0]
    return sum(1 for key in ranked[:k] if key in grades) / min(k, len(judged))


# ---- the baseline --------------------------------------------------------------------------------------

class PlainBM25:
    """FTS5 with the porter stemmer over every field's text, the query's words OR-ed, ranked by bm25()."""

    def __init__(self, entries: list[dict]):
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE docs USING fts5(key UNINDEXED, body, "
                        "tokenize='porter unicode61 remove_diacritics 2')")
        self.db.executemany("INSERT INTO docs (key, body) VALUES (?, ?)", [(e["key"], " ".join([
            e["name"], " ".join(e["tags"]), " ".join(e["trainedWords"]), Path(e["file"]).stem, e["creator"],
            e["version"], e["description"]])) for e in entries])

    def search(self, text: str, k: int = 10) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        if not words:
            return []
        match = " OR ".join('"' + w + '"' for w in words)
        return [key for (key,) in self.db.execute(
            "SELECT key FROM docs WHERE docs MATCH ? ORDER BY bm25(docs) LIMIT ?", (match, k))]


# ---- one backend, in a child process -------------------------------------------------------------------

def import_catalog(entries: list[dict], folder: Path) -> dict[int, str]:
    """Every entry through import-model's code: {model id: entry key}."""
    from cli.catalog import import_file
    from models_db.accounts import User, create_user
    from tests.helpers import tiny_safetensors
    from tqdm import tqdm
    keys = {}
    for e in tqdm(entries, desc="importing", unit="model", mininterval=1):
        if not User.select().where(User.username == e["creator"]).exists():
            create_user(e["creator"])
        path = folder / (Path(e["file"]).stem + ".safetensors")  # the stem is what is indexed
        path.write_bytes(tiny_safetensors(e["key"]))
        summary = import_file(path, name=e["name"], model_type=e["type"], base_model=e["baseModel"],
                              version_name=e["version"], trained_words=",".join(e["trainedWords"]),
                              tags=",".join(e["tags"]), description=e["description"], owner=e["creator"],
                              publish=True)
        keys[summary["modelId"]] = e["key"]
    return keys


def run(args) -> dict:
    import settings
    settings.reload()
    from jobs.search import flush_search_index
    from models_db import search
    from models_db.migrations import upgrade
    from models_db.search.base import SearchQuery
    upgrade()
    entries, queries = load("catalog.jsonl"), load("queries.jsonl")
    folder = Path(tempfile.mkdtemp(prefix="atelier-relevance-files-"))
    keys = import_catalog(entries, folder)
    shutil.rmtree(folder, ignore_errors=True)
    while flush_search_index.fn():
        pass
    baseline = PlainBM25(entries)

    def atelier(text: str, hybrid: bool) -> list[str]:
        return [keys[h.id] for h in search.search(SearchQuery(text=text, hybrid=hybrid, limit=10)).hits]

    systems = {"bm25": baseline.search, "keyword": lambda t: atelier(t, False), "hybrid": lambda t: atelier(t, True)}
    scores = {name: {"ndcg": [], "mrr": [], "recall": [], "empty": 0} for name in systems}
    kinds: dict[str, dict[str, list[float]]] = {}
    misses = []
    for query in queries:
        grades = query["relevant"]
        for name, find in systems.items():
            ranked = find(query["query"])
            s = scores[name]
            s["ndcg"].append(ndcg(ranked, grades))
            s["mrr"].append(reciprocal_rank(ranked, grades))
            s["recall"].append(recall(ranked, grades))
            s["empty"] += not ranked
            kinds.setdefault(query["kind"], {}).setdefault(name, []).append(s["mrr"][-1])
            if name == "hybrid" and (s["mrr"][-1] < 1 or s["recall"][-1] < 1):
                misses.append({"query": query["query"], "kind": query["kind"], "top": ranked[:5],
                               "wanted": sorted(grades, key=lambda key: -grades[key])[:5],
                               "mrr": s["mrr"][-1], "recall": s["recall"][-1]})
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return {"models": len(entries), "queries": len(queries),
            "systems": {n: {"ndcg": mean(s["ndcg"]), "mrr": mean(s["mrr"]), "recall": mean(s["recall"]),
                            "empty": s["empty"]} for n, s in scores.items()},
            "kinds": {kind: {n: mean(v) for n, v in by.items()} for kind, by in kinds.items()},
            "misses": misses}


def child(args) -> int:
    home = Path(tempfile.mkdtemp(prefix="atelier-relevance-"))
    args.pg_db, args.redis_url = f"atelier_relevance_{uuid.uuid4().hex[:10]}", ""
    try:
        if args.backend == "postgres":
            pg_admin(args.pg_url, f"CREATE DATABASE {args.pg_db}")
        configure_env(args, home)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # the ONNX export of the sentence encoder is made once, not once per run
        os.environ.setdefault("MODEL_CACHE_DIR", str(Path(tempfile.gettempdir()) / "atelier-bench-model-cache"))
        Path(args.json_out).write_text(json.dumps(run(args)))
        return 0
    finally:
        from models_db.redis_store import stop_embedded
        stop_embedded()
        if args.backend == "postgres":
            from models_db import db as database
            database.db.close_all()
            pg_admin(args.pg_url, f"DROP DATABASE IF EXISTS {args.pg_db} WITH (FORCE)")
        shutil.rmtree(home, ignore_errors=True)


# ---- the report ----------------------------------------------------------------------------------------

def parent(args) -> int:
    results = {}
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        fd, name = tempfile.mkstemp(prefix="atelier-relevance-", suffix=".json")
        os.close(fd)
        print(f"\n===== {backend} =====", flush=True)
        subprocess.call([sys.executable, __file__, "--child", "--backend", backend, "--pg-url", args.pg_url,
                         "--json-out", name])
        out = Path(name)
        results[backend] = json.loads(out.read_text()) if out.stat().st_size else None
        out.unlink(missing_ok=True)
    ok = True
    for backend, r in results.items():
        if not r:
            print(f"\n{backend}: failed")
            ok = False
            continue
        print(f"\n{backend}: {r['models']} models, {r['queries']} queries")
        print(f"  {'system':<10}{'nDCG@10':>9}{'MRR@10':>9}{'recall@5':>10}{'empty':>7}")
        for name in SYSTEMS:
            s = r["systems"][name]
            print(f"  {name:<10}{s['ndcg']:>9.3f}{s['mrr']:>9.3f}{s['recall']:>10.3f}{s['empty']:>7}")
        print("  MRR@10 by kind of query: " + ", ".join(
            f"{kind} {by['hybrid']:.2f} (bm25 {by['bm25']:.2f})" for kind, by in sorted(r["kinds"].items())))
        if args.show_misses:
            for miss in r["misses"]:
                print(f"    miss [{miss['kind']}] {miss['query']!r}: top {miss['top']} wanted {miss['wanted']}")
        hybrid, bm25 = r["systems"]["hybrid"], r["systems"]["bm25"]
        met = (hybrid["mrr"] >= MRR_TARGET and hybrid["recall"] >= RECALL_TARGET and hybrid["empty"] == 0
               and hybrid["mrr"] - bm25["mrr"] >= MARGIN and hybrid["recall"] - bm25["recall"] >= MARGIN)
        ok &= met
        print(f"  {backend}: hybrid MRR@10 {hybrid['mrr']:.3f} (bm25 {bm25['mrr']:.3f}), recall@5 "
              f"{hybrid['recall']:.3f} (bm25 {bm25['recall']:.3f}), {hybrid['empty']} empty: "
              f"{'ok' if met else 'MISSED'} (target >= {MRR_TARGET} / {RECALL_TARGET}, +{MARGIN} over bm25, "
              "none empty)")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--pg-url", default="postgresql://127.0.0.1:5432/test")
    p.add_argument("--show-misses", action="store_true", help="the hybrid queries that missed, with their top 5")
    p.add_argument("--child", action="store_true")
    p.add_argument("--json-out", default="")
    args = p.parse_args()
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
