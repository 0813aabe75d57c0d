"""The database search engine shared by the SQLite FTS5 and PostgreSQL backends: filters, typo
correction, semantic neighbours fused with keyword ranking (RRF), sorts, facets, paging, highlights.
A subclass supplies the full-text part: _index_text, _remove_text, _clear_text, _match_text, _match_ids,
_keyword (and may replace _highlight). Hot queries are compiled once per process (compiled_tuples)."""
from __future__ import annotations

import functools
import html
import itertools
import operator
import re
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from peewee import SQL, chunked, fn

from models_db.cursors import decode_keyset, encode_keyset
from models_db.db import compiled_tuples, db, id_set
from models_db.search import vectors
from models_db.search.base import (
    SORT_COLUMNS,
    Backend,
    Hit,
    SearchQuery,
    SearchResult,
    page,
    rrf,
)
from models_db.search.tables import SearchDoc, SearchFacet, SearchTerm, facet_rows

TOKEN = re.compile(r"\w+", re.UNICODE)
CANDIDATES = 200  # best keyword matches ranked, fused and counted in facets
TIER = 500  # a word matching more documents than this is ranked among its newest TIER matches only
SEMANTIC_K = 200
SEMANTIC_MIN = 0.45  # MiniLM cosine: related texts score 0.45-0.8, unrelated ones 0.0-0.4
MARK_OPEN, MARK_CLOSE = "\x02", "\x03"


def tokens(text: str) -> list[str]:
    return [t.lower() for t in TOKEN.findall(text or "")][:16]


@functools.lru_cache(maxsize=65536)  # highlighting folds every word of every hit's text
def fold(word: str) -> str:
    """Lower case without diacritics, as the full-text indexes compare words."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


@functools.lru_cache(maxsize=1024)
def word_pattern(wanted: tuple[str, ...]) -> re.Pattern:
    """Whole words equal to a wanted (folded) word, or starting with the last one."""
    alternatives = [re.escape(w) for w in wanted[:-1]] + [re.escape(wanted[-1]) + r"\w*"]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def match_spans(text: str, words: list[str], start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Where the query's words are in text[start:end]: one regex over ASCII text, word by word folded
    otherwise."""
    wanted = tuple(w for w in (fold(w) for w in words) if w)
    if not wanted:
        return
    pattern, end = word_pattern(wanted), len(text) if end is None else end
    if text.isascii():
        yield from (m.span() for m in pattern.finditer(text, start, end))
    else:
        yield from (m.span() for m in TOKEN.finditer(text, start, end) if pattern.fullmatch(fold(m.group())))


def word_window(text: str, at: int, window: int) -> tuple[int, int]:
    """(start, end) of about `window` words of text, a third of them before position `at`; only the
    words near `at` are read (descriptions are long)."""
    after = list(itertools.islice(TOKEN.finditer(text, at), window))
    before = list(TOKEN.finditer(text, max(0, at - 20 * window), at))[-max(window // 3, window - len(after)):]
    words = (before + after)[:window]
    return (words[0].start(), words[-1].end()) if words else (0, len(text))


def highlight_text(text: str, words: list[str], window: int | None = None) -> str:
    """HTML of text with the query's words in <mark> (the last word also as a prefix); with window,
    only about that many words around the first match."""
    text = text or ""
    start, end, prefix, suffix = 0, len(text), "", ""
    if window is not None:  # only the window is read for matches
        first = next(match_spans(text, words), (0, 0))
        start, end = word_window(text, first[0], window)
        prefix, suffix = ("…" if TOKEN.search(text, 0, start) else ""), ("…" if TOKEN.search(text, end) else "")
    out, pos = [], start
    for a, b in match_spans(text, words, start, end):
        out += [html.escape(text[pos:a]), "<mark>", html.escape(text[a:b]), "</mark>"]
        pos = b
    out.append(html.escape(text[pos:end]))
    return prefix + "".join(out) + suffix


def mark_html(text: str) -> str:
    """Escapes a highlighted fragment and turns the sentinels into <mark> tags."""
    return html.escape(text or "").replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")


def conditions_key(conds: list) -> tuple:
    """The SQL and values of these conditions: queries built around the same ones compile alike."""
    sql, params = db.obj.get_sql_context().sql(functools.reduce(operator.and_, conds)).query()
    return (sql, *params)


@functools.cache
def semantic_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="semantic-search")


def nearest_to(text: str) -> list[tuple[int, float]]:
    from gpu.embeddings import query_vector
    return [(i, s) for i, s in vectors.vector_index.nearest(query_vector(text), SEMANTIC_K) if s >= SEMANTIC_MIN]


class Vocabulary:
    """The index's terms, cached per process for typo correction and grouped by first letter and length:
    a correction is looked for among terms that start like the word and are about as long."""

    def __init__(self):
        self.known: set[str] = set()
        self.groups: dict[tuple[str, int], list[str]] = {}
        self.loaded_at = -1e9
        self.lock = threading.Lock()

    def get(self) -> tuple[set[str], dict[tuple[str, int], list[str]]]:
        with self.lock:
            if time.monotonic() - self.loaded_at > 300:
                terms = [t for (t,) in db.execute(SearchTerm.select(SearchTerm.term)).fetchall()]
                groups: dict[tuple[str, int], list[str]] = {}
                for t in terms:
                    groups.setdefault((t[0], len(t)), []).append(t)
                self.known, self.groups, self.loaded_at = set(terms), groups, time.monotonic()
            return self.known, self.groups

    def reset(self):
        self.loaded_at = -1e9


class DatabaseBackend(Backend):
    vocabulary = Vocabulary()

    # ---- writing -------------------------------------------------------------------------
    def upsert(self, docs: list[dict], vectors_by_id) -> None:
        ids = [d["id"] for d in docs]
        with db.atomic():
            SearchDoc.delete().where(SearchDoc.id.in_(ids)).execute()
            SearchFacet.delete().where(SearchFacet.doc_id.in_(ids)).execute()
            self._remove_text(ids)
            rows = [{**{k: d[k] for k in (
                "id", "name", "description", "creator", "owner_id", "type", "status", "nsfw", "nsfw_level",
                "published_at", "download_count", "rating")}, "tags_text": " ".join(d["tags"])} for d in docs]
            SearchDoc.insert_many(rows).execute()
            facets = [row for d in docs for row in facet_rows(d)]
            for batch in chunked(facets, 500):
                SearchFacet.insert_many(batch).execute()
            terms = sorted({t[:64] for d in docs for t in tokens(f"{d['name']} {' '.join(d['tags'])} {d['creator']}")
                            if len(t) >= 3})
            for batch in chunked(terms, 500):
                SearchTerm.insert_many([{"term": t} for t in batch]).on_conflict_ignore().execute()
            self._index_text(docs)
        if vectors_by_id:
            vectors.store(*vectors_by_id)

    def delete(self, ids: list[int]) -> None:
        with db.atomic():
            SearchDoc.delete().where(SearchDoc.id.in_(ids)).execute()
            SearchFacet.delete().where(SearchFacet.doc_id.in_(ids)).execute()
            self._remove_text(ids)
        vectors.remove(ids)

    def clear(self) -> None:
        with db.atomic():
            for table in (SearchDoc, SearchFacet, SearchTerm):
                table.delete().execute()
            self._clear_text()
        vectors.clear()
        self.vocabulary.reset()

    def count(self) -> int:
        return SearchDoc.select().count()

    # ---- reading -------------------------------------------------------------------------
    def conditions(self, q: SearchQuery) -> list:
        """Conditions on SearchDoc for the visible documents that pass the filters."""
        visible = SearchDoc.status == "Published"
        if q.viewer_id:
            visible |= SearchDoc.owner_id == q.viewer_id
        conds = [visible]
        if q.types:
            conds.append(SearchDoc.type.in_(q.types))
        if q.creator:
            conds.append(SearchDoc.creator == q.creator)
        if q.nsfw is False:
            conds.append(SearchDoc.nsfw == False)  # noqa: E712
        if q.max_nsfw_level is not None:
            conds.append(SearchDoc.nsfw_level <= q.max_nsfw_level)
        for field, values in (("baseModel", q.base_models),):
            if values:
                conds.append(SearchDoc.id.in_(SearchFacet.select(SearchFacet.doc_id).where(
                    SearchFacet.field == field, SearchFacet.value.in_(values))))
        for tag in q.tags:
            conds.append(SearchDoc.id.in_(SearchFacet.select(SearchFacet.doc_id).where(
                SearchFacet.field == "tags", SearchFacet.value == tag.lower())))
        return conds

    def correct(self, words: list[str]) -> list[str]:
        """Each word not in the vocabulary replaced by its closest term (edit distance 1, or 2 from six
        letters on) among the terms with its first letter."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein
        known, groups = self.vocabulary.get()
        out = []
        for word in words:
            if word in known or len(word) < 4:
                out.append(word)
                continue
            cutoff = 1 if len(word) < 6 else 2
            pool = [t for n in range(len(word) - cutoff, len(word) + cutoff + 1) for t in groups.get((word[0], n), ())]
            match = process.extractOne(word, pool, scorer=Levenshtein.distance, score_cutoff=cutoff)
            out.append(match[0] if match else word)
        return out

    def search(self, q: SearchQuery) -> SearchResult:
        words = tokens(q.text)
        conds = self.conditions(q)
        allowed = SearchDoc.select(SearchDoc.id).where(*conds)
        corrected = None
        if words:
            near = self.start_semantic(q.text) if q.hybrid else None
            keyword = self.matches(words, conds, q.limit, q.sort)
            if len(keyword) < 3:
                fixed = self.correct(words)
                if fixed != words:
                    better = self.matches(fixed, conds, q.limit, q.sort)
                    if len(better) > len(keyword):
                        keyword, words, corrected = better, fixed, " ".join(fixed)
            ranked = [(i, s) for i, s in keyword]
            if near is not None:
                semantic = self.semantic(near.result(), conds)
                ranked = rrf([i for i, _ in keyword], [i for i, _ in semantic])
            if q.sort != "Relevance":
                ranked = self.sort_ids([i for i, _ in ranked], q.sort)
            chunk, next_cursor = page(ranked, q)
            ids = [i for i, _ in ranked]
        else:
            chunk, next_cursor = self.browse(q, allowed)
            ids = None
        highlights = self._highlight([i for i, _ in chunk], words) if (q.highlight and words) else {}
        facets = self.facets(ids, allowed) if q.facets else {}
        total = len(ids) if ids is not None else allowed.count()
        return SearchResult([Hit(i, s, highlights.get(i, {})) for i, s in chunk], total, facets, next_cursor,
                            corrected)

    def matches(self, words: list[str], conds: list, wanted: int, sort: str = "Relevance") -> list[tuple[int, float]]:
        """Matches in names, tags and creators first (few, and what people look for); descriptions
        too when those are not enough to fill a page."""
        found = self.best(words, conds, CANDIDATES, "primary", sort, wanted)
        if len(found) < wanted:
            found = self.best(words, conds, CANDIDATES, "all", sort, wanted)
        return found

    def best(self, words: list[str], conds: list, limit: int, fields: str, sort: str = "Relevance",
             wanted: int = 1, whole_words_first: bool = True) -> list[tuple[int, float]]:
        """The best `limit` matches. The last word is read as a prefix (search as you type), but first as a
        whole word when whole_words_first: a prefix reads every term it extends, so on a large index the
        prefix is only worth it when the whole word finds fewer than `wanted`."""
        found: list[tuple[int, float]] = []
        for prefix in ((False, True) if whole_words_first else (True,)):
            found = self.ranked(words, conds, limit, fields, sort, wanted, prefix)
            if len(found) >= wanted:
                break
        return found

    def ranked(self, words: list[str], conds: list, limit: int, fields: str, sort: str, wanted: int,
               prefix: bool) -> list[tuple[int, float]]:
        """Ranking every match of a common word is what makes full-text search slow on a large catalog,
        so relevance ranks the newest TIER matches (a rowid range: cheap), and only falls back to every
        match when the filters leave fewer than `wanted` of those; another sort orders every match by its
        column, which needs no ranking."""
        text = self._match_text(words, fields, prefix)
        if sort != "Relevance":
            column = getattr(SearchDoc, SORT_COLUMNS[sort])
            rows = (SearchDoc.select(SearchDoc.id).where(SearchDoc.id.in_(self._match_ids(text, fields)), *conds)
                    .order_by(column.desc(), SearchDoc.id.desc()).limit(limit).tuples())
            return [(i, 0.0) for (i,) in rows]
        newest = compiled_tuples(("tier", self.name, fields), lambda match, most: self._match_ids(match, fields)
                                 .order_by(SQL("1 DESC")).limit(most), text, TIER + 1)
        if not newest:
            return []
        # the tier, or every match when there are no more than that
        found = self._keyword(text, conds, limit, fields, newest[-1][0])
        if len(newest) > TIER and len(found) < wanted:
            found = self._keyword(text, conds, limit, fields)
        return found

    def start_semantic(self, text: str) -> Future:
        """The query's nearest vectors, computed in another thread while the keyword part runs in this
        one: the embedding, the matrix product and SQLite all release the GIL."""
        vectors.vector_index.refresh()
        return semantic_pool().submit(nearest_to, text)

    def semantic(self, near: list[tuple[int, float]], conds: list) -> list[tuple[int, float]]:
        """The visible documents among the nearest."""
        if not near:
            return []
        ok = {i for (i,) in compiled_tuples(("visible", conditions_key(conds)), lambda some: SearchDoc.select(
            SearchDoc.id).where(SearchDoc.id.in_(id_set(some)), *conds), [i for i, _ in near])}
        return [(i, s) for i, s in near if i in ok]

    def sort_ids(self, ids: list[int], sort: str) -> list[tuple[int, float]]:
        column = getattr(SearchDoc, SORT_COLUMNS[sort])
        rows = SearchDoc.select(SearchDoc.id, column).where(SearchDoc.id.in_(id_set(ids))).tuples()
        ordered = sorted(rows, key=lambda r: (r[1] is not None, r[1] or 0, r[0]), reverse=True)
        return [(i, 0.0) for i, _ in ordered]

    def browse(self, q: SearchQuery, allowed) -> tuple[list[tuple[int, float]], str | None]:
        """No text: the filtered documents in sort order, keyset-paged."""
        column = getattr(SearchDoc, SORT_COLUMNS.get(q.sort, "published_at"))
        query = SearchDoc.select(SearchDoc.id, column).where(SearchDoc.id.in_(allowed))
        if q.cursor:
            value, last = decode_keyset(q.cursor, dated=column is SearchDoc.published_at)
            query = query.where((column < value) | ((column == value) & (SearchDoc.id < last)))
        rows = list(query.order_by(column.desc(), SearchDoc.id.desc()).limit(q.limit + 1).tuples())
        more = len(rows) > q.limit
        rows = rows[:q.limit]
        cursor = None
        if more:
            cursor = encode_keyset(rows[-1][1], rows[-1][0])
        return [(i, 0.0) for i, _ in rows], cursor

    def facets(self, ids: list[int] | None, allowed) -> dict:
        """Counts of each facet value among the candidates (or every allowed document when browsing)."""
        if ids is None:
            count = fn.COUNT(SearchFacet.doc_id)
            query = (SearchFacet.select(SearchFacet.field, SearchFacet.value, count.alias("n"))
                     .where(SearchFacet.doc_id.in_(allowed))
                     .group_by(SearchFacet.field, SearchFacet.value).order_by(count.desc()))
            counts = db.execute(query).fetchall()  # hundreds of rows: the raw cursor
        else:  # a few thousand (field, value) pairs from the covering index, counted here
            pairs = compiled_tuples(("facets",), lambda some: SearchFacet.select(SearchFacet.field, SearchFacet.value)
                                    .where(SearchFacet.doc_id.in_(id_set(some))), ids[:CANDIDATES])
            counts = [(*pair, n) for pair, n in Counter(pairs).most_common()]
        out: dict = {"type": {}, "baseModel": {}, "tags": {}}
        for field, value, n in counts:
            if len(out[field]) < 20:
                out[field][value] = n
        return out

    def suggest(self, prefix: str, limit: int = 10, viewer_id: int | None = None) -> list[str]:
        words = tokens(prefix)
        if not words:
            return []
        conds = self.conditions(SearchQuery(viewer_id=viewer_id))
        ids = [i for i, _ in self.best(words, conds, limit * 5, "name", wanted=limit, whole_words_first=False)]
        rows = dict(SearchDoc.select(SearchDoc.id, SearchDoc.name).where(SearchDoc.id.in_(ids)).tuples())
        seen, out = set(), []
        for i in ids:
            name = rows.get(i)
            if name and name.lower() not in seen:
                seen.add(name.lower())
                out.append(name)
        return out[:limit]

    # ---- the full-text part -----------------------------------------------------------------
    def _index_text(self, docs: list[dict]) -> None: ...
    def _remove_text(self, ids: list[int]) -> None: ...
    def _clear_text(self) -> None: ...

    def _match_text(self, words: list[str], fields: str, prefix: bool) -> str:
        """The full-text query where every word matches (the last one as a prefix when `prefix`) within
        the fields: "name", "primary" (name, tags, creator) or "all"."""

    def _match_ids(self, text: str, fields: str):
        """A query of the ids of the documents that match (see _match_text)."""

    def _keyword(self, text: str, conds: list, limit: int, fields="all",
                 floor: int | None = None) -> list[tuple[int, float]]:
        """Best-ranked matches first (see _match_text) that pass conds, among documents with id >= floor
        when given."""

    def _highlight(self, ids: list[int], words: list[str]) -> dict[int, dict]:
        """{id: {"name": html, "description": html}} with matches in <mark>."""
        if not ids:
            return {}
        rows = compiled_tuples(("highlight",), lambda some: SearchDoc.select(
            SearchDoc.id, SearchDoc.name, SearchDoc.description).where(SearchDoc.id.in_(id_set(some))), ids)
        return {i: {"name": highlight_text(name, words), "description": highlight_text(desc, words, 24)}
                for i, name, desc in rows}
