"""Server-side render time of the HTML pages on a seeded catalog, beside their JSON API equivalents,
measured side by side in one run.

Target: every page's median <= 100 ms of server time (the time inside the Flask test client's request).

    .venv/bin/python bench/web.py                       # 100k models, SQLite in a temp ATELIER_HOME
    .venv/bin/python bench/web.py --models 20000 --requests 20
    DATABASE_URL=postgresql://user@db:5432/postgres .venv/bin/python bench/web.py   # a fresh database next to it

The catalog comes from bench/api.py's seeder (N models, N/20 creators, 1-2 versions per model, tags), plus
--images showcase images (status Ready, nsfw level 1 or 4, no blob: pages only link to image URLs) on the
newest, the most downloaded and random published versions, every model in the search index (keyword text
and random unit vectors, as bench/search.py does), and one signed-in viewer for /generate. After --warmup
untimed requests each, every page and API request is timed in turn, --requests times. A page answering
404 is reported "missing" (not written yet) and skipped; another non-200 status is reported and fails.
"x JSON equiv" divides by the API request serving the same data (for /generate: the model listing).
This is a benchmark, not a test."""
from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote_plus, urlsplit

ROOT = Path(__file__).resolve().parent.parent
# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = str(ROOT)

from bench.api import IMAGE_META, environment_from_env, percentile, seed  # noqa: E402

TARGET_MS = 100.0
WORD = "dragon"  # one of bench/api.py's WORDS, so in many model names


def seed_images(n: int, rng: random.Random) -> None:
    """n images, a third each on the newest, the most downloaded and random published versions."""
    from models_db.catalog import Model, ModelVersion
    from models_db.db import db
    from models_db.images import Image
    pub = (ModelVersion.select(ModelVersion.id, Model.owner).join(Model)
           .where(Model.status == "Published", ModelVersion.status == "Published"))
    targets = (list(pub.order_by(Model.published_at.desc()).limit(n // 3).tuples())
               + list(pub.order_by(Model.download_count.desc()).limit(n // 3).tuples()))
    targets += rng.sample(list(pub.tuples()), n - len(targets))
    rows = [(owner, vid, "Ready", "image.jpeg", rng.randbytes(32).hex(), "image/jpeg", 832, 1216, 900_000,
             "UDQ]o;of00WB~qj[M{ay4nWBofWB", IMAGE_META, rng.choice((1, 1, 1, 4))) for vid, owner in targets]
    fields = [Image.user, Image.model_version, Image.status, Image.filename, Image.blob, Image.mime, Image.width,
              Image.height, Image.size_bytes, Image.blurhash, Image.meta_json, Image.nsfw_level]
    with db.atomic():
        for i in range(0, len(rows), 1000):
            Image.insert_many(rows[i:i + 1000], fields=fields).execute()


def index_search() -> None:
    import numpy as np

    from gpu.embeddings import DIM
    from models_db import search
    from models_db.search import documents
    backend, rng = search.get_backend(), np.random.default_rng(7)
    for ids in documents.all_model_ids(1000):
        docs, _ = documents.build(ids)
        vectors = rng.standard_normal((len(docs), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        backend.upsert(docs, ({d["id"]: documents.embedding_text(d) for d in docs}, vectors))


class NextLink(HTMLParser):
    """The href of the first element with rel="next"."""
    href = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self.href is None and "next" in (a.get("rel") or "").split() and a.get("href"):
            parts = urlsplit(a["href"])
            self.href = parts.path + (f"?{parts.query}" if parts.query else "")


def run(args) -> int:
    import settings
    settings.reload()
    from models_db import db as database
    from models_db.migrations import upgrade
    upgrade()
    db, sqlite = database.db, settings.get().is_sqlite
    db.connect(reuse_if_open=True)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    counts = seed(db, args.models, rng, sqlite)["counts"]
    seed_s = time.perf_counter() - started
    seed_images(args.images, rng)
    images_s = time.perf_counter() - started - seed_s
    index_search()
    index_s = time.perf_counter() - started - seed_s - images_s
    db.execute_sql("ANALYZE" if sqlite else "VACUUM ANALYZE")
    from models_db.accounts import create_user, start_session
    from models_db.catalog import Model
    from models_db.images import Image
    viewer = create_user("bench_viewer", password="bench-password-1")
    login_token = start_session(viewer, 1)
    top = Model.select().where(Model.status == "Published").order_by(Model.download_count.desc()).first()
    image = Image.select().where(Image.nsfw_level == 1).order_by(Image.id).first()
    owner = top.owner.username
    db.close()
    print(f"database: {settings.get().database_url.split('@')[-1]}; seeded {counts} in {seed_s:.1f} s, "
          f"{args.images} images in {images_s:.1f} s, search index in {index_s:.1f} s "
          f"(total {time.perf_counter() - started:.1f} s)", flush=True)
    gc.collect()

    from web import create_app
    app = create_app()
    anon, signed_in = app.test_client(), app.test_client()
    with app.test_request_context(environ_base=signed_in.environ_base):  # as the client's requests look
        ident = app.login_manager._session_identifier_generator()
    with signed_in.session_transaction() as sess:  # what flask-login's login_user stores
        sess.update(_user_id=login_token, _fresh=True, _id=ident)

    api = "/api/v1/models?limit=24"
    first_api = anon.get(api).get_json() or {}
    baselines = {  # JSON equivalent of each page
        "list": api, "downloads": api + "&sort=Most+Downloaded",
        "filtered": api + "&types=LORA&baseModels=SDXL+1.0", "query": f"{api}&query={WORD}",
        "page2": f"{api}&cursor={quote_plus(first_api.get('metadata', {}).get('nextCursor', ''))}",
        "model": f"/api/v1/models/{top.id}", "user": f"{api}&username={owner}", "image": f"/api/v1/images/{image.id}"}
    home = anon.get("/")
    link = NextLink()
    link.feed(home.get_data(as_text=True) if home.status_code == 200 else "")
    pages = [("/", "/", "list"), ("/?sort=Most+Downloaded", "/?sort=Most+Downloaded", "downloads"),
             ("/?types=LORA&baseModels=SDXL+1.0", "/?types=LORA&baseModels=SDXL+1.0", "filtered"),
             (f"/?query={WORD}", f"/?query={WORD}", "query"), ("page 2 (rel=next)", link.href, "page2"),
             (f"/models/{top.id}", f"/models/{top.id}", "model"), (f"/user/{owner}", f"/user/{owner}", "user"),
             ("/generate (signed in)", "/generate", "list"), (f"/images/{image.id}", f"/images/{image.id}", "image")]

    targets, notes = {}, {}  # key -> (client, url); page label -> why it is not timed
    for key, url in baselines.items():
        targets[key] = (anon, url)
    for label, url, _ in pages:
        client = signed_in if url == "/generate" else anon
        status = client.get(url).status_code if url else 404
        if status == 200:
            targets[label] = (client, url)
        else:
            notes[label] = "missing" if status == 404 else f"HTTP {status}"
    times: dict[str, list[float]] = {k: [] for k in targets}
    for n in range(args.warmup + args.requests):
        for key, (client, url) in targets.items():  # in turn, so none has the caches to itself
            start = time.perf_counter()
            response = client.get(url)
            elapsed = (time.perf_counter() - start) * 1000
            if response.status_code != 200:
                print(f"{url} -> {response.status_code}", file=sys.stderr)
            if n >= args.warmup:
                times[key].append(elapsed)
    med = {k: statistics.median(t) for k, t in times.items()}
    p95 = {k: percentile(sorted(t), 95) for k, t in times.items()}

    print(f"\n{args.models} models, {args.requests} timed requests each after {args.warmup} warm-ups, "
          f"Flask test client in-process; x list = page median / median of GET {api}")
    head = f"{'page':<36} {'median ms':>9} {'p95 ms':>8} {'x list':>7} {'x JSON equiv':>12}  verdict (<= 100 ms)"
    print(head + "\n" + "-" * len(head))
    failed = False
    for label, url, equiv in pages:
        if label in notes:
            print(f"{label:<36} {notes[label]}")
            failed |= notes[label] != "missing"
            continue
        ok = med[label] <= TARGET_MS
        failed |= not ok
        print(f"{label:<36} {med[label]:9.1f} {p95[label]:8.1f} {med[label] / med['list']:7.1f} "
              f"{med[label] / med[equiv]:12.1f}  {'PASS' if ok else 'FAIL'}")
    print("\nJSON equivalents")
    for key, url in baselines.items():
        print(f"{key:<10} {url[:60]:<61} {med[key]:9.1f} {p95[key]:8.1f}")
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=100_000, help="models to seed (default 100000)")
    p.add_argument("--images", type=int, default=3000, help="showcase images (default 3000)")
    p.add_argument("--requests", type=int, default=50, help="timed requests per page (default 50)")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests per page first (default 3)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the catalog (default 1)")
    args = p.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    with environment_from_env("web") as env:
        if url and env.backend == "sqlite":
            os.environ["DATABASE_URL"] = url  # another SQLite file: it must be empty
        return run(args)


if __name__ == "__main__":
    sys.exit(main())
