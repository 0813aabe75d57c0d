"""The database search engine shared by the SQLite FTS5 and PostgreSQL backends: filters, synonyms,
typo correction, a matching strategy that relaxes a query finding too little, semantic neighbours fused
with keyword ranking (RRF), sorts, facets, paging, highlights.

Keyword matching goes from strict to loose, each step only while the results are fewer than a page, and
each step's matches rank after the earlier ones': every word as written in the primary fields (names,
tags, trigger words, file and version names, creators), then in every field, then stemmed; then (like
Meilisearch's "last" strategy) the query without its last word, without its last two, ..., and finally
any of its words. A misspelt word (not in the index at all) is corrected before the query is relaxed.

A subclass supplies the full-text part: _index_text, _remove_text, _clear_text, _match_text, _match_ids,
_keyword (and may replace _highlight). Hot queries are compiled once per process (compiled_tuples)."""
from __future__ import annotations

import functools
import html
import itertools
import operator
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from peewee import SQL, chunked, fn

from models_db.cursors import decode_keyset, encode_keyset
from models_db.db import compiled_tuples, db, id_set
from models_db.search import freshness, synonyms, vectors
from models_db.search.base import (
    SORT_COLUMNS,
    TEXT_FIELDS,
    Backend,
    Hit,
    SearchQuery,
    SearchResult,
    page,
    rrf,
)
from models_db.search.tables import SearchDoc, SearchFacet, SearchTerm, facet_rows

STAGES = ("primary", "all", "stem")  # exact in the primary fields, exact anywhere, stemmed anywhere
MAX_DROPPED = 3  # words dropped from the end of a query before any word is enough
MAX_ANY_WORD = 4  # ... for hybrid queries of at most this many words: OR-ing a sentence's common words
# reads most of a large index, and ranks worse than the semantic neighbours that fill the list anyway
STOPWORDS = frozenset("a an and are as at be by for from in into is it of on or that the this to with your".split())

TOKEN = re.compile(r"\w+", re.UNICODE)
CANDIDATES = 200  # best keyword matches ranked, fused and counted in facets
TIER = 500  # a word matching more documents than this is ranked among its newest TIER matches only
SEMANTIC_K = 200
SEMANTIC_MIN = 0.45  # MiniLM cosine: related texts score 0.45-0.8, unrelated ones 0.0-0.4
SEMANTIC_FILL = 0.3  # a short result list is filled with neighbours down to this similarity
SEMANTIC_SPREAD = 0.1  # ... and no further below the best neighbour than this
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
    """The query's nearest documents down to the fill floor (which of them count is decided later)."""
    from gpu.embeddings import query_vector
    return [(i, s) for i, s in vectors.vector_index.nearest(query_vector(text), SEMANTIC_K) if s >= SEMANTIC_FILL]


def load_vocabulary() -> tuple[set[str], dict[tuple[str, int], list[str]]]:
    """The index's terms for typo correction, grouped by first letter and length: a correction is looked
    for among terms that start like the word and are about as long."""
    terms = [t for (t,) in db.execute(SearchTerm.select(SearchTerm.term)).fetchall()]
    groups: dict[tuple[str, int], list[str]] = {}
    for t in terms:
        groups.setdefault((t[0], len(t)), []).append(t)
    return set(terms), groups


def vocabulary_text(doc: dict) -> str:
    return " ".join([doc["name"], doc["creator"], *doc["tags"], *doc.get("triggers", ()), *doc.get("files", ()),
                     *doc.get("versions", ())])


def relaxations(groups: list[tuple[str, ...]], hybrid: bool) -> Iterator[tuple[list[tuple[str, ...]], bool]]:
    """(groups, any_word) of a query finding too little: without its last word, its last two, ... (at
    most MAX_DROPPED), then any of its words (but stop words; in hybrid search, only of short queries)."""
    for n in range(len(groups) - 1, max(0, len(groups) - 1 - MAX_DROPPED), -1):
        yield groups[:n], False
    meaningful = [g for g in groups if g[0] not in STOPWORDS and len(g[0]) > 1]
    if 1 < len(meaningful) and (len(meaningful) <= MAX_ANY_WORD or not hybrid):
        yield meaningful, True


def expand(words: list[str]) -> list[tuple[str, ...]]:
    """Each word with its synonyms."""
    return [synonyms.alternatives(w) for w in words]


def add_new(found: dict[int, float], ranked: list[tuple[int, float]]) -> None:
    """Appends the ranked matches not found before (dicts keep their order)."""
    for i, score in ranked:
        found.setdefault(i, score)


def fuse(keyword: list[tuple[int, float]], semantic: list[tuple[int, float]], wanted: int) -> list[tuple[int, float]]:
    """Keyword and semantic rankings fused by reciprocal rank: the semantic side counts its close
    neighbours; when that leaves fewer than `wanted`, weaker ones near the best fill the list (so a
    query that shares no word with a related document still finds it), ranked after the rest."""
    close = [i for i, s in semantic if s >= SEMANTIC_MIN]
    ranked = rrf([i for i, _ in keyword], close)
    if len(ranked) < wanted and semantic:
        best = semantic[0][1]
        seen = {i for i, _ in ranked}
        low = ranked[-1][1] if ranked else 1.0
        weak = [(i, s) for i, s in semantic if i not in seen and s < SEMANTIC_MIN and s >= best - SEMANTIC_SPREAD]
        ranked += [(i, low * s / 2) for i, s in weak[:wanted - len(ranked)]]
    return ranked


class DatabaseBackend(Backend):
    vocabulary = freshness.FreshCache(load_vocabulary)

    # ---- writing -------------------------------------------------------------------------
    def upsert(self, docs: list[dict], vectors_by_id) -> None:
        ids = [d["id"] for d in docs]
        with db.atomic():
            SearchDoc.delete().where(SearchDoc.id.in_(ids)).execute()
            SearchFacet.delete().where(SearchFacet.doc_id.in_(ids)).execute()
            self._remove_text(ids)
            rows = [{**{k: d[k] for k in (
                "id", "name", "description", "creator", "owner_id", "type", "status", "nsfw", "nsfw_level",
                "published_at", "download_count", "rating")},
                **{column: " ".join(d.get(f, ())) for f, column in TEXT_FIELDS.items()}} for d in docs]
            SearchDoc.insert_many(rows).execute()
            facets = [row for d in docs for row in facet_rows(d)]
            for batch in chunked(facets, 500):
                SearchFacet.insert_many(batch).execute()
            terms = sorted({t[:64] for d in docs for t in TOKEN.findall(vocabulary_text(d).lower()) if len(t) >= 3})
            new_terms = []
            for batch in chunked(terms, 500):
                known = {t for (t,) in SearchTerm.select(SearchTerm.term).where(SearchTerm.term.in_(batch)).tuples()}
                new_terms += [t for t in batch if t not in known]
            for batch in chunked(new_terms, 500):
                SearchTerm.insert_many([{"term": t} for t in batch]).on_conflict_ignore().execute()
            self._index_text(docs)
        if new_terms:
            freshness.bump()  # every process reloads its typo vocabulary at its next correction
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

    def known(self, word: str, vocabulary: set[str]) -> bool:
        """In the typo vocabulary, or anywhere in the index (descriptions too, stemmed)."""
        if word in vocabulary:
            return True
        return self._match_ids(self._match_text([(word,)], "stem", False), "stem").limit(1).exists()

    def correct(self, words: list[str]) -> list[str]:
        """Each word found nowhere in the index replaced by its closest term (edit distance 1, or 2 from
        six letters on) among the terms with its first letter. The vocabulary is reloaded after every
        index flush (freshness), so a model indexed a second ago is corrected to."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein
        known, groups = self.vocabulary.get()
        out = []
        for word in words:
            if len(word) < 4 or word in STOPWORDS or self.known(word, known):
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
            ranked, words, corrected = self.keyword(words, conds, q)
            if near is not None:
                ranked = fuse(ranked, self.semantic(near.result(), conds), q.limit)
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

    def keyword(self, words: list[str], conds: list, q: SearchQuery):
        """(ranked matches, the words matched, the corrected query or None): every word strictly (see
        matches); misspelt words corrected when that finds too little; then the query relaxed, its
        matches ranked after the strict ones."""
        groups = expand(words)
        found = self.matches(groups, conds, q.limit, q.sort)
        corrected = None
        if len(found) < 3 and q.correct:
            fixed = self.correct(words)
            if fixed != words:
                better = self.matches(expand(fixed), conds, q.limit, q.sort)
                if len(better) > len(found):
                    found, words, groups, corrected = better, fixed, expand(fixed), " ".join(fixed)
        for attempt, any_word in relaxations(groups, q.hybrid):
            if len(found) >= q.limit:
                break
            add_new(found, self.best(attempt, conds, CANDIDATES, "stem", q.sort, q.limit, (False,), any_word))
        return list(found.items()), words, corrected

    def matches(self, groups: list[tuple[str, ...]], conds: list, wanted: int,
                sort: str = "Relevance") -> dict[int, float]:
        """Documents matching every word (or one of its synonyms), best first: as written in names, tags,
        trigger words, file and version names and creators (few, and what people look for); as written
        anywhere; stemmed anywhere, each step only while fewer than `wanted` are found."""
        found: dict[int, float] = {}
        for fields in STAGES:
            prefixes = (False, True) if fields == "primary" else (False,)  # as you type: names, tags, creators
            add_new(found, self.best(groups, conds, CANDIDATES, fields, sort, wanted, prefixes))
            if len(found) >= wanted:
                break
        return found

    def best(self, groups: list[tuple[str, ...]], conds: list, limit: int, fields: str, sort: str = "Relevance",
             wanted: int = 1, prefixes: tuple[bool, ...] = (False, True),
             any_word: bool = False) -> list[tuple[int, float]]:
        """The best `limit` matches. The last word is read as a prefix (search as you type) in the primary
        fields, but first as a whole word: a prefix reads every term it extends, so on a large index the
        prefix is only worth it when the whole word finds fewer than `wanted`."""
        found: list[tuple[int, float]] = []
        for prefix in prefixes:
            found = self.ranked(self._match_text(groups, fields, prefix, any_word), conds, limit, fields, sort,
                                wanted)
            if len(found) >= wanted:
                break
        return found

    def ranked(self, text: str, conds: list, limit: int, fields: str, sort: str,
               wanted: int) -> list[tuple[int, float]]:
        """Ranking every match of a common word is what makes full-text search slow on a large catalog,
        so relevance ranks the newest TIER matches (a rowid range: cheap), and only falls back to every
        match when the filters leave fewer than `wanted` of those; another sort orders every match by its
        column, which needs no ranking."""
        if sort != "Relevance":
            column = getattr(SearchDoc, SORT_COLUMNS[sort])
            rows = (SearchDoc.select(SearchDoc.id).where(SearchDoc.id.in_(self._match_ids(text, fields)), *conds)
                    .order_by(column.desc(), SearchDoc.id.desc()).limit(limit).tuples())
            return [(i, 0.0) for (i,) in rows]
        newest = compiled_tuples(("tier", self.name, fields), lambda match, most: self._newest(match, fields)
                                 .limit(most), text, TIER + 1)
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

    def suggest_models(self, prefix: str, limit: int = 10, viewer_id: int | None = None) -> list[tuple[int, str]]:
        words = tokens(prefix)
        if not words:
            return []
        conds = self.conditions(SearchQuery(viewer_id=viewer_id))
        ids = [i for i, _ in self.best([(w,) for w in words], conds, limit * 5, "name", wanted=limit,
                                       prefixes=(True,))]
        rows = dict(SearchDoc.select(SearchDoc.id, SearchDoc.name).where(SearchDoc.id.in_(ids)).tuples())
        seen, out = set(), []
        for i in ids:
            name = rows.get(i)
            if name and name.lower() not in seen:
                seen.add(name.lower())
                out.append((i, name))
        return out[:limit]

    # ---- the full-text part -----------------------------------------------------------------
    def _index_text(self, docs: list[dict]) -> None: ...
    def _remove_text(self, ids: list[int]) -> None: ...
    def _clear_text(self) -> None: ...

    def _match_text(self, groups: list[tuple[str, ...]], fields: str, prefix: bool, any_word: bool = False) -> str:
        """The full-text query where each group (a word or phrase and its synonyms) matches (any_word: one
        group is enough; the first of the last group as a prefix when `prefix`) within the fields: "name",
        "primary" (name, tags, trigger words, file and version names, creator), "all" (those and the
        description) as written, or "stem" (all, stemmed)."""

    def _match_ids(self, text: str, fields: str):
        """A query of the ids of the documents that match (see _match_text)."""

    def _newest(self, text: str, fields: str):
        """The ids of the matches, newest first (see _match_text)."""
        return self._match_ids(text, fields).order_by(SQL("1 DESC"))

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
