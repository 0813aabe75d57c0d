"""Search: one backend interface (base.Backend), three implementations — SQLite FTS5 (embedded
default), PostgreSQL full text (when DATABASE_URL is PostgreSQL), Solr (when SOLR_URL is set) —
kept in sync through a Redis pending set flushed by an `index`-queue actor (sync.py)."""
from __future__ import annotations

import time

import settings
from models_db.search import documents, vectors
from models_db.search.base import Backend, SearchQuery, SearchResult  # noqa: F401

_backends: dict = {}


def backend_name() -> str:
    s = settings.get()
    if s.solr_url:
        return "solr"
    return "sqlite" if s.is_sqlite else "postgres"


def get_backend(name: str | None = None) -> Backend:
    name = name or backend_name()
    if name not in _backends:
        if name == "solr":
            from models_db.search.solr import SolrBackend
            _backends[name] = SolrBackend(settings.get().solr_url)
        elif name == "sqlite":
            from models_db.search.sqlite_fts import SqliteBackend
            _backends[name] = SqliteBackend()
        elif name == "postgres":
            from models_db.search.postgres_fts import PostgresBackend
            _backends[name] = PostgresBackend()
        else:
            raise ValueError(f"unknown search backend {name!r}")
    return _backends[name]


def embed(docs: list[dict], backend: Backend):
    """(texts, vectors) for the documents whose text changed since their vector was made."""
    from gpu.embeddings import encode
    texts = {d["id"]: documents.embedding_text(d) for d in docs}
    if getattr(backend, "stores_vectors", False):
        changed = texts
    else:
        changed = vectors.stale(texts)
    if not changed:
        return None
    return changed, encode(list(changed.values()))


def index_models(model_ids: list[int], backend: Backend | None = None) -> tuple[int, int]:
    """Brings these models' documents up to date in the index. Returns (indexed, removed)."""
    from metrics import definitions as m
    backend = backend or get_backend()
    started = time.perf_counter()
    docs, gone = documents.build(model_ids)
    if docs:
        backend.upsert(docs, embed(docs, backend))
    if gone:
        backend.delete(gone)
    m.search_index_seconds.labels(backend.name).observe(time.perf_counter() - started)
    return len(docs), len(gone)


def search(q: SearchQuery, backend: Backend | None = None) -> SearchResult:
    from metrics import definitions as m
    backend = backend or get_backend()
    started = time.perf_counter()
    result = backend.search(q)
    kind = "hybrid" if q.hybrid and q.text.strip() else ("keyword" if q.text.strip() else "browse")
    m.search_latency.labels(backend.name, kind).observe(time.perf_counter() - started)
    return result
