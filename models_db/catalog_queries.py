"""Reading the catalog: filtered, sorted, keyset-paged model listings and hash lookups, fetched in a
few set-based queries so a page of 100 models with versions, files and tags costs five round trips."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from peewee import JOIN, Case, Tuple, fn

from models_db.accounts import User
from models_db.catalog import Model, ModelFile, ModelFileHash, ModelTag, ModelVersion, Tag
from models_db.cursors import decode_keyset, encode_keyset
from models_db.db import compiled_dicts, id_set, utcnow
from models_db.stats import PERIOD_DAYS, ModelStat

SORTS = {"Highest Rated": Model.rating, "Most Downloaded": Model.download_count, "Newest": Model.published_at}
PERIOD_SORTS = {"Highest Rated": ModelStat.rating, "Most Downloaded": ModelStat.download_count}


@dataclass
class ModelFilter:
    query: str = ""
    tag: str = ""
    username: str = ""
    types: list = field(default_factory=list)
    base_models: list = field(default_factory=list)
    ids: list = field(default_factory=list)
    nsfw: bool | None = None
    period: str = "AllTime"
    rating: float | None = None
    allow_no_credit: bool | None = None
    allow_derivatives: bool | None = None
    allow_different_license: bool | None = None
    allow_commercial_use: str = ""
    period_sorts: bool = False  # the period picks the stats window of the sort instead of filtering


def _where(f: ModelFilter):
    conds = [Model.status == "Published"]
    if f.query:
        conds.append(fn.LOWER(Model.name).contains(f.query.lower()))
    if f.types:
        conds.append(Model.type.in_(f.types))
    if f.ids:
        conds.append(Model.id.in_(f.ids))
    if f.nsfw is False:
        conds.append(Model.nsfw == False)  # noqa: E712
    if f.rating is not None:
        conds.append(Model.rating >= f.rating)
    for column, value in ((Model.allow_no_credit, f.allow_no_credit),
                          (Model.allow_derivatives, f.allow_derivatives),
                          (Model.allow_different_license, f.allow_different_license)):
        if value is not None:
            conds.append(column == value)
    if f.allow_commercial_use and f.allow_commercial_use != "None":
        conds.append(Model.allow_commercial_use.contains(f.allow_commercial_use))
    if f.period in PERIOD_DAYS and not f.period_sorts:
        conds.append(Model.published_at >= utcnow() - timedelta(days=PERIOD_DAYS[f.period]))
    if f.username:
        conds.append(Model.owner == User.select(User.id).where(User.username == f.username))
    if f.tag:
        conds.append(fn.EXISTS(ModelTag.select(ModelTag.id).join(Tag).where(
            ModelTag.model == Model.id, Tag.name == f.tag.strip().lower())))
    if f.base_models:
        conds.append(fn.EXISTS(ModelVersion.select(ModelVersion.id).where(
            ModelVersion.model == Model.id, ModelVersion.status == "Published",
            ModelVersion.base_model.in_(f.base_models))))
    return conds


def list_models(f: ModelFilter, sort: str, limit: int, cursor: str | None = None,
                page: int | None = None) -> tuple[list[dict], str | None, int | None]:
    """Returns (model rows as dicts, next cursor or None, total when paging by page).
    `Most Downloaded` and `Highest Rated` with a period sort by the downloads or the average rating
    rolled up for that period; `Newest` with a period lists the models published within it."""
    f.period_sorts = sort in PERIOD_SORTS and f.period in PERIOD_DAYS
    conds = _where(f)
    query = with_owner()
    if f.period_sorts:
        key = fn.COALESCE(PERIOD_SORTS[sort], 0)
        query = query.switch(Model).join(ModelStat, JOIN.LEFT_OUTER, on=(
            (ModelStat.model == Model.id) & (ModelStat.period == f.period)))
    else:
        key = SORTS.get(sort, Model.published_at)
    query = query.select_extend(key.alias("sort_key")).where(*conds)
    total = None
    if cursor:
        value, last_id = decode_keyset(cursor, dated=key is Model.published_at)
        query = query.where(Tuple(key, Model.id) < Tuple(value, last_id))
    elif page:
        total = Model.select(fn.COUNT(Model.id)).where(*conds).scalar()
        query = query.offset((page - 1) * limit)
    rows = list(query.order_by(key.desc(), Model.id.desc()).limit(limit + 1).dicts())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_keyset(rows[-1]["sort_key"], rows[-1]["id"])
    return rows, next_cursor, total


def versions_for(model_ids, viewer_id: int | None = None, staff: bool = False) -> dict[int, list[dict]]:
    """Versions per model, newest first; drafts only for their owner (or staff)."""
    if not model_ids:
        return {}

    def build(ids, viewer):
        query = ModelVersion.select(ModelVersion, Model.owner).join(Model).where(ModelVersion.model.in_(id_set(ids)))
        if not staff:
            visible = ModelVersion.status == "Published"
            if viewer_id:
                visible |= Model.owner == viewer
            query = query.where(visible)
        return query.order_by(ModelVersion.index.asc(), ModelVersion.id.desc())

    out: dict[int, list[dict]] = {}
    for row in compiled_dicts(("versions_for", staff, bool(viewer_id)), build, list(model_ids), viewer_id or 0):
        out.setdefault(row["model"], []).append(row)
    return out


def files_for(version_ids) -> dict[int, list[dict]]:
    """Ingested files per version (pending ones are not shown), with their hashes."""
    if not version_ids:
        return {}
    files = compiled_dicts(("files_for",), lambda ids: ModelFile.select().where(
        ModelFile.version.in_(id_set(ids)), ModelFile.status != "Pending").order_by(
        ModelFile.primary.desc(), ModelFile.id), list(version_ids))
    hashes: dict[int, dict] = {}
    if files:
        for h in compiled_dicts(("hashes_for",), lambda ids: ModelFileHash.select().where(
                ModelFileHash.file.in_(id_set(ids))), [f["id"] for f in files]):
            hashes.setdefault(h["file"], {})[h["type"]] = h["hash"]
    out: dict[int, list[dict]] = {}
    for f in files:
        f["hashes"] = hashes.get(f["id"], {})
        out.setdefault(f["version"], []).append(f)
    return out


def tags_for(model_ids) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {m: [] for m in model_ids}
    if model_ids:
        for row in compiled_dicts(("tags_for",), lambda ids: ModelTag.select(ModelTag.model, Tag.name).join(Tag)
                                  .where(ModelTag.model.in_(id_set(ids))).order_by(Tag.name), list(model_ids)):
            out[row["model"]].append(row["name"])
    return out


PUBLISHED = (ModelVersion.status == "Published") & (Model.status == "Published")


def visible_versions(viewer_id: int | None, staff: bool = False):
    """Condition on versions joined to their models: those this viewer may see (published ones; their own;
    staff all) and never those of deleted models. The SQL form of catalog.visible_to."""
    if staff:
        return Model.status != "Deleted"
    if viewer_id:
        return PUBLISHED | ((Model.owner == viewer_id) & (Model.status != "Deleted"))
    return PUBLISHED


def version_ids_by_hash(hashes: list[str], viewer_id: int | None = None, staff: bool = False) -> list[int]:
    """One version per hash (any type, any case) whose files carry it, in the order asked. Only versions
    this viewer may see count (published, or their own; staff see all but deleted ones): a published copy
    first, then the oldest file, so a draft holding the same bytes never hides a published version."""
    wanted = [h.strip().upper() for h in hashes if h and h.strip()]
    if not wanted:
        return []
    query = (ModelFileHash.select(ModelFileHash.hash, ModelFile.version).join(ModelFile).join(ModelVersion)
             .join(Model).where(ModelFileHash.hash.in_(wanted), ModelFile.status != "Pending",
                                visible_versions(viewer_id, staff)))
    found: dict[str, int] = {}
    for h, vid in query.order_by(Case(None, [(PUBLISHED, 0)], 1), ModelFile.id).tuples():
        found.setdefault(h, vid)
    seen, out = set(), []
    for h in wanted:
        vid = found.get(h)
        if vid is not None and vid not in seen:
            seen.add(vid)
            out.append(vid)
    return out


def with_owner():
    """Models with their owner's username and image (the row shape of every listing)."""
    return Model.select(Model, User.username, User.image.alias("owner_image")).join(
        User, on=(Model.owner == User.id))


def model_rows(model_ids) -> list[dict]:
    return compiled_dicts(("model_rows",), lambda ids: with_owner().where(Model.id.in_(id_set(ids))),
                          list(model_ids))


def tag_page(query: str, limit: int, page: int) -> tuple[list[tuple[str, int]], int]:
    count = fn.COUNT(Model.id)
    base = (Tag.select(Tag.name, count.alias("n")).join(ModelTag, JOIN.LEFT_OUTER)
            .join(Model, JOIN.LEFT_OUTER, on=((ModelTag.model == Model.id) & (Model.status == "Published"))))
    where = Tag.name.contains(query.lower()) if query else True
    total = Tag.select(fn.COUNT(Tag.id)).where(where).scalar()
    rows = (base.where(where).group_by(Tag.id, Tag.name).order_by(count.desc(), Tag.name)
            .offset((page - 1) * limit).limit(limit).tuples())
    return list(rows), total


def creator_page(query: str, limit: int, page: int) -> tuple[list[tuple[str, str, int]], int]:
    count = fn.COUNT(Model.id)
    where = (User.username.contains(query) if query else True)
    has_models = fn.EXISTS(Model.select(Model.id).where(Model.owner == User.id, Model.status == "Published"))
    total = User.select(fn.COUNT(User.id)).where(where, has_models).scalar()
    rows = (User.select(User.username, User.image, count.alias("n"))
            .join(Model, on=((Model.owner == User.id) & (Model.status == "Published")))
            .where(where).group_by(User.id, User.username, User.image)
            .order_by(count.desc(), User.username).offset((page - 1) * limit).limit(limit).tuples())
    return list(rows), total


POPULAR_TAGS_TTL_S = 900  # refreshed every 300 s by the scheduler; counted on a miss


def popular_tags(limit: int = 12) -> list[str]:
    """The most used tags of published models (counting them scans every tag link: cached in Redis)."""
    from models_db.redis_store import cached_json
    return cached_json("popular-tags", POPULAR_TAGS_TTL_S, _count_popular_tags)[:limit]


def refresh_popular_tags() -> int:
    from models_db.redis_store import drop_cached
    drop_cached("popular-tags")
    return len(popular_tags(limit=None))


def _count_popular_tags() -> list[str]:
    return [t for t, _ in tag_page("", 40, 1)[0]]
