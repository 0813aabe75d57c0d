"""GET /api/v1/search (hits, facets, highlights, cursor paging) and /api/v1/search/suggest."""
from __future__ import annotations

from flask import Blueprint, jsonify, request, url_for

from models_db import catalog as c
from models_db import catalog_queries, search
from models_db.cursors import encode_offset
from models_db.search.base import SORTS, SearchQuery
from web.api import boolean, current_api_user, error, integer, multi, page_url
from web.openapi import BOOL, INT, LIMIT, NUM, STR, array, doc, enum, obj, param, ref

bp = Blueprint("search", __name__)
MODES = ("hybrid", "keyword")


def query_from_request(text: str, *, sort_default: str, limit: int, cursor: str | None) -> SearchQuery:
    types = multi("types")
    bad = [t for t in types if t not in c.MODEL_TYPES]
    if bad:
        error(400, f"unknown model type {bad[0]!r}; one of: {', '.join(c.MODEL_TYPES)}")
    sort = request.args.get("sort") or sort_default
    if sort not in SORTS:
        error(400, f"sort must be one of: {', '.join(SORTS)}")
    mode = request.args.get("mode", "hybrid")
    if mode not in MODES:
        error(400, "mode must be hybrid or keyword")
    user = current_api_user()
    return SearchQuery(text=text, types=types, base_models=multi("baseModels"),
                       tags=multi("tags") + ([request.args["tag"]] if request.args.get("tag") else []),
                       creator=request.args.get("username", "").strip(), nsfw=boolean("nsfw"),
                       viewer_id=user.id if user else None, sort=sort, limit=limit, cursor=cursor,
                       hybrid=mode == "hybrid")


def ordered_rows(ids: list[int]) -> list[dict]:
    rows = {r["id"]: r for r in catalog_queries.model_rows(ids)}
    return [rows[i] for i in ids if i in rows]


@bp.get("/api/v1/search")
@doc("Search models: keyword (typo tolerant) fused with semantic similarity, with facets and highlights", "search",
     response=obj(
         ("items", "hits", "metadata"), items=array(ref("Model")),
         hits=array(obj(id=INT, score=NUM, highlights={"type": "object"})),
         facets={"type": "object", "additionalProperties": {"type": "object", "additionalProperties": INT}},
         query=obj(text=STR, corrected={"type": ["string", "null"]}), metadata=ref("PageMetadata")),
     params=[param("q"), param("mode", enum(MODES)), param("sort", enum(SORTS)),
             param("types", enum(c.MODEL_TYPES), many=True), param("baseModels", many=True),
             param("tags", many=True), param("username"), param("nsfw", BOOL), LIMIT(100), param("cursor")])
def search_models():
    from web.catalog import models_json
    text = request.args.get("q", request.args.get("query", "")).strip()
    limit = integer("limit", 20, 1, 100)
    q = query_from_request(text, sort_default="Relevance" if text else "Newest", limit=limit,
                           cursor=request.args.get("cursor") or None)
    result = search.search(q)
    items = models_json(ordered_rows([h.id for h in result.hits]), require_versions=False)
    metadata = {"pageSize": limit, "totalItems": result.total}
    if result.next_cursor:
        metadata.update(nextCursor=result.next_cursor, nextPage=page_url(cursor=result.next_cursor))
    return jsonify(items=items, hits=[{"id": h.id, "score": round(h.score, 6), "highlights": h.highlights}
                                      for h in result.hits],
                   facets=result.facets, query={"text": text, "corrected": result.corrected},
                   metadata=metadata)


@bp.get("/api/v1/search/suggest")
@doc("Model names completing a prefix, and the models they name (a suggestion opens its model)", "search",
     response=obj(query=STR, suggestions=array(STR), models=array(obj(id=INT, name=STR, url=STR))),
     params=[param("q", required=True), LIMIT(20)])
def suggest():
    text = request.args.get("q", "").strip()
    limit = integer("limit", 8, 1, 20)
    user = current_api_user()
    found = search.get_backend().suggest_models(text, limit, user.id if user else None)
    return jsonify(query=text, suggestions=[name for _, name in found],
                   models=[{"id": i, "name": name, "url": url_for("site_catalog.model_page", model_id=i)}
                           for i, name in found])


def models_page(f, sort: str, limit: int, cursor: str | None, page: int | None):
    """/api/v1/models?query=… through the search engine: (rows, next cursor, total)."""
    if page and not cursor:
        cursor = encode_offset((page - 1) * limit)
    sort = "Relevance" if not request.args.get("sort") else sort
    q = query_from_request(f.query, sort_default=sort, limit=limit, cursor=cursor)
    q.facets = q.highlight = False
    result = search.search(q)
    return ordered_rows([h.id for h in result.hits]), result.next_cursor, result.total


ENGINE_FILTERS = {"query", "tag", "username", "types", "baseModels", "nsfw", "sort", "limit", "page", "cursor",
                  "token", "mode", "primaryFileOnly", "period"}


def handles(args) -> bool:
    """True when a /models request with a query uses only filters the search engine knows."""
    return bool(args.get("query", "").strip()) and set(args) <= ENGINE_FILTERS and \
        args.get("period", "AllTime") == "AllTime"
