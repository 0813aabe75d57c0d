"""Scale-out search backend: a Solr collection (SolrCloud) through pysolr, with the configset in
models_db/search/solr_conf (same fields and weights, a dense vector field for the semantic half)."""
from __future__ import annotations

from models_db.cursors import decode_mark, encode_mark
from models_db.search.base import (
    SORT_COLUMNS,
    Backend,
    Hit,
    SearchQuery,
    SearchResult,
    page,
)
from models_db.search.engine import (
    CANDIDATES,
    MARK_CLOSE,
    MARK_OPEN,
    SEMANTIC_FILL,
    SEMANTIC_K,
    fuse,
    mark_html,
    tokens,
)

FACETS = {"type": "type", "base_models": "baseModel", "tags": "tags"}


def quote(value) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def solr_date(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


class SolrBackend(Backend):
    name = "solr"
    stores_vectors = True

    def __init__(self, url: str):
        import pysolr
        self.solr = pysolr.Solr(url.rstrip("/"), timeout=10, always_commit=False)

    # ---- writing -------------------------------------------------------------------------
    def upsert(self, docs, vectors_by_id) -> None:
        vecs = {}
        if vectors_by_id:
            texts, matrix = vectors_by_id
            vecs = {i: [float(x) for x in row] for i, row in zip(texts, matrix)}
        rows = []
        for d in docs:
            row = {"id": str(d["id"]), "name": d["name"], "tags": d["tags"], "creator": d["creator"],
                   "description": d["description"], "type": d["type"], "base_models": d["base_models"],
                   "status": d["status"], "owner_id": d["owner_id"], "nsfw": d["nsfw"],
                   "nsfw_level": d["nsfw_level"], "published_at": solr_date(d["published_at"]),
                   "download_count": d["download_count"], "rating": d["rating"],
                   "triggers": d.get("triggers", []), "files": d.get("files", []), "versions": d.get("versions", [])}
            if d["id"] in vecs:
                row["vector"] = vecs[d["id"]]
            rows.append({k: v for k, v in row.items() if v is not None})
        self.solr.add(rows, commitWithin=1000)

    def delete(self, ids) -> None:
        self.solr.delete(id=[str(i) for i in ids], commit=True)

    def clear(self) -> None:
        self.solr.delete(q="*:*", commit=True)

    def count(self) -> int:
        return self.solr.search("*:*", rows=0).hits

    def commit(self) -> None:
        self.solr.commit()

    # ---- reading -------------------------------------------------------------------------
    def filters(self, q: SearchQuery) -> list[str]:
        fq = ["status:Published" + (f" OR owner_id:{int(q.viewer_id)}" if q.viewer_id else "")]
        if q.types:
            fq.append("type:(" + " OR ".join(map(quote, q.types)) + ")")
        if q.base_models:
            fq.append("base_models:(" + " OR ".join(map(quote, q.base_models)) + ")")
        fq += [f"tags:{quote(t.lower())}" for t in q.tags]
        if q.creator:
            fq.append(f"creator:{quote(q.creator)}")
        if q.nsfw is False:
            fq.append("nsfw:false")
        if q.max_nsfw_level is not None:
            fq.append(f"nsfw_level:[* TO {int(q.max_nsfw_level)}]")
        return fq

    def keyword(self, words: list[str], fq: list[str], fuzzy=False, rows=CANDIDATES, any_word=False):
        terms = [f"{w}~{1 if len(w) < 6 else 2}" if fuzzy and len(w) >= 4 else w for w in words]
        if not fuzzy:
            terms[-1] = terms[-1] + "*"
        options = {"q.op": "OR"} if any_word else {}
        result = self.solr.search(" ".join(terms), fq=fq, fl="id,score", rows=rows, **options)
        return [(int(d["id"]), float(d["score"])) for d in result.docs]

    def search(self, q: SearchQuery) -> SearchResult:
        fq = self.filters(q)
        words = tokens(q.text)
        if not words:
            return self.browse(q, fq)
        keyword, corrected = self.keyword(words, fq), None
        if len(keyword) < 3:
            fuzzy = self.keyword(words, fq, fuzzy=True)
            if len(fuzzy) > len(keyword):
                keyword, corrected = fuzzy, " ".join(f"{w}~" for w in words)
        if len(keyword) < q.limit and len(words) > 1:  # too few with every word: any word (ranked after)
            seen = {i for i, _ in keyword}
            keyword += [(i, s) for i, s in self.keyword(words, fq, any_word=True) if i not in seen]
        ranked = keyword
        if q.hybrid:
            ranked = fuse(keyword, self.semantic(q.text, fq), q.limit)
        if q.sort != "Relevance":
            ranked = self.sort_ids([i for i, _ in ranked], q.sort)
        chunk, next_cursor = page(ranked, q)
        ids = [i for i, _ in ranked]
        highlights = self.highlight([i for i, _ in chunk], words) if q.highlight else {}
        facets = self.facets([f"id:({' OR '.join(map(str, ids[:CANDIDATES]))})"] if ids else ["id:none"]) \
            if q.facets else {}
        return SearchResult([Hit(i, s, highlights.get(i, {})) for i, s in chunk], len(ids), facets, next_cursor,
                            corrected)

    def semantic(self, text: str, fq: list[str]):
        from gpu.embeddings import query_vector
        vector = ",".join(f"{x:.6f}" for x in query_vector(text))
        result = self.solr.search(f"{{!knn f=vector topK={SEMANTIC_K}}}[{vector}]", fq=fq, fl="id,score",
                                  rows=SEMANTIC_K, defType="lucene")
        # Solr's cosine score is (1 + cos) / 2
        return [(int(d["id"]), 2 * float(d["score"]) - 1) for d in result.docs
                if 2 * float(d["score"]) - 1 >= SEMANTIC_FILL]

    def sort_ids(self, ids, sort):
        if not ids:
            return []
        column = SORT_COLUMNS[sort]
        result = self.solr.search("*:*", fq=[f"id:({' OR '.join(map(str, ids))})"], fl="id",
                                  sort=f"{column} desc,id desc", rows=len(ids))
        return [(int(d["id"]), 0.0) for d in result.docs]

    def browse(self, q: SearchQuery, fq: list[str]) -> SearchResult:
        column = SORT_COLUMNS.get(q.sort, "published_at")
        mark = decode_mark(q.cursor) if q.cursor else "*"
        result = self.solr.search("*:*", fq=fq, fl="id", sort=f"{column} desc,id desc", rows=q.limit,
                                  cursorMark=mark)
        following = result.nextCursorMark if len(result.docs) == q.limit and result.nextCursorMark != mark else None
        facets = self.facets(fq) if q.facets else {}
        return SearchResult([Hit(int(d["id"]), 0.0) for d in result.docs], result.hits, facets,
                            encode_mark(following) if following else None)

    def facets(self, fq: list[str]) -> dict:
        result = self.solr.search("*:*", fq=fq, rows=0, facet="true", **{
            "facet.field": list(FACETS), "facet.limit": 20, "facet.mincount": 1})
        out = {}
        for field, name in FACETS.items():
            flat = result.facets["facet_fields"].get(field, [])
            out[name] = dict(zip(flat[::2], flat[1::2]))
        return out

    def highlight(self, ids, words):
        if not ids:
            return {}
        result = self.solr.search(" ".join(words), fq=[f"id:({' OR '.join(map(str, ids))})"], fl="id", rows=len(ids),
                                  hl="true", **{"hl.fl": "name,description", "hl.tag.pre": MARK_OPEN,
                                                "hl.tag.post": MARK_CLOSE, "hl.fragsize": 120})
        out = {}
        for doc_id, fields in (result.highlighting or {}).items():
            out[int(doc_id)] = {k: mark_html(v[0]) for k, v in fields.items() if v}
        return out

    def suggest_models(self, prefix, limit=10, viewer_id=None):
        words = tokens(prefix)
        if not words:
            return []
        fq = self.filters(SearchQuery(viewer_id=viewer_id))
        query = " AND ".join(f"name_prefix:{w}" for w in words)
        result = self.solr.search(query, fq=fq, fl="id,name", rows=limit, sort="download_count desc", defType="lucene")
        names = {}
        for d in result.docs:
            names.setdefault(d["name"].lower(), (int(d["id"]), d["name"]))
        return list(names.values())
