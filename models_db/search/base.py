"""What every search backend takes and returns, and the parts they share (fusion, cursors)."""
from __future__ import annotations

from dataclasses import dataclass, field

from models_db.cursors import decode_offset, encode_offset

SORTS = ("Relevance", "Highest Rated", "Most Downloaded", "Newest")
SORT_COLUMNS = {"Highest Rated": "rating", "Most Downloaded": "download_count", "Newest": "published_at"}
FIELD_WEIGHTS = {"name": 10.0, "tags": 5.0, "triggers": 5.0, "files": 4.0, "creator": 3.0, "versions": 2.0,
                 "description": 1.0}
TEXT_FIELDS = {"tags": "tags_text", "triggers": "triggers_text", "files": "files_text", "versions": "versions_text"}
RRF_K = 60


@dataclass
class SearchQuery:
    text: str = ""
    types: list = field(default_factory=list)
    base_models: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    creator: str = ""
    nsfw: bool | None = None  # False: only models not marked nsfw
    max_nsfw_level: int | None = None
    viewer_id: int | None = None  # sees their own unpublished models too
    sort: str = "Relevance"
    limit: int = 20
    cursor: str | None = None
    hybrid: bool = True
    facets: bool = True
    highlight: bool = True
    correct: bool = True  # False: the words as typed ("search instead for")


@dataclass
class Hit:
    id: int
    score: float
    highlights: dict = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[Hit]
    total: int
    facets: dict = field(default_factory=dict)
    next_cursor: str | None = None
    corrected: str | None = None  # the query actually run after typo correction


def rrf(*rankings: list[int], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of ranked id lists."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores.items(), key=lambda item: (-item[1], -item[0]))


def page(ranked: list[tuple[int, float]], q: SearchQuery) -> tuple[list[tuple[int, float]], str | None]:
    """Offset paging over a ranked list (relevance order has no stable key)."""
    offset = decode_offset(q.cursor) if q.cursor else 0
    chunk = ranked[offset:offset + q.limit]
    more = offset + q.limit < len(ranked)
    return chunk, encode_offset(offset + q.limit) if more else None


class Backend:
    """One search index. Implementations: SQLite FTS5, PostgreSQL full text, Solr."""
    name = "base"

    def upsert(self, docs: list[dict], vectors) -> None: ...
    def delete(self, ids: list[int]) -> None: ...
    def clear(self) -> None: ...
    def count(self) -> int: ...
    def search(self, q: SearchQuery) -> SearchResult: ...

    def suggest_models(self, prefix: str, limit: int = 10, viewer_id: int | None = None) -> list[tuple[int, str]]:
        """(id, name) of the models whose names complete the prefix, best first, one per name."""

    def suggest(self, prefix: str, limit: int = 10, viewer_id: int | None = None) -> list[str]:
        return [name for _, name in self.suggest_models(prefix, limit, viewer_id)]
