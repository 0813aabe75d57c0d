"""Statistics of models and versions rolled up from the raw events: downloads, reviews (ratings and thumbs),
comments, and reactions to the versions' images.

- Per period (Day, Week, Month, Year, AllTime): ModelStat / VersionStat rows, rebuilt by rollup().
- All time, on the models and versions themselves (what the API's `stats` show): refresh_models()
  recomputes them for a few models after an event; rollup() repairs every model's from its AllTime
  counts (a download is counted by increment)."""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from peewee import (
    Case,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    SqliteDatabase,
    chunked,
    fn,
)

from models_db.catalog import Model, ModelFile, ModelVersion, search_changed
from models_db.db import BaseModel, db, transaction, utcnow
from models_db.downloads import Download
from models_db.images import Image, Reaction
from models_db.reviews import Comment, Review

PERIOD_DAYS = {"Day": 1, "Week": 7, "Month": 30, "Year": 365}
PERIODS = (*PERIOD_DAYS, "AllTime")
# the counts every stats row holds; comments are on models, so a version's comment_count stays 0
COUNTS = ("download_count", "rating_count", "thumbs_up_count", "thumbs_down_count", "comment_count",
          "reaction_count")
VERSION_COLUMNS = ("download_count", "rating_count", "rating", "thumbs_up_count", "thumbs_down_count")
MODEL_COLUMNS = (*VERSION_COLUMNS, "comment_count")


class PeriodStat(BaseModel):
    period = CharField(max_length=8)
    download_count = IntegerField(default=0)
    rating_count = IntegerField(default=0)
    rating = FloatField(default=0)
    thumbs_up_count = IntegerField(default=0)
    thumbs_down_count = IntegerField(default=0)
    comment_count = IntegerField(default=0)
    reaction_count = IntegerField(default=0)
    updated_at = DateTimeField(default=utcnow)


class ModelStat(PeriodStat):
    model = ForeignKeyField(Model, on_delete="CASCADE")

    class Meta:
        indexes = ((("model", "period"), True), (("period", "download_count"), False),
                   (("period", "rating"), False))


class VersionStat(PeriodStat):
    version = ForeignKeyField(ModelVersion, on_delete="CASCADE")

    class Meta:
        indexes = ((("version", "period"), True),)


TABLES = [ModelStat, VersionStat]


def _blank() -> dict:
    return {**dict.fromkeys(COUNTS, 0), "rating_sum": 0}


def counts(since=None, model_ids=None) -> tuple[dict[int, dict], dict[int, dict]]:
    """(per version, per model) counts of the events since `since` (all when None), for the given models
    (all when None). Each value: COUNTS plus rating_sum."""
    versions: dict[int, dict] = defaultdict(_blank)
    models: dict[int, dict] = defaultdict(_blank)

    def scoped(query, created, model_column):
        if since is not None:
            query = query.where(created >= since)
        if model_ids is not None:
            query = query.where(model_column.in_(list(model_ids)))
        return query

    def add(rows, target, *fields):
        for key, *values in rows:
            for field, value in zip(fields, values, strict=True):
                target[key][field] += value or 0

    per_version_downloads = scoped(
        Download.select(ModelFile.version, ModelVersion.model, fn.COUNT(Download.id)).join(ModelFile)
        .join(ModelVersion), Download.created_at, ModelVersion.model).group_by(ModelFile.version, ModelVersion.model)
    per_version_reactions = scoped(
        Reaction.select(Image.model_version, ModelVersion.model, fn.COUNT(Reaction.id)).join(Image)
        .join(ModelVersion).where(Image.private == False),  # noqa: E712 (unposted outputs count nowhere)
        Reaction.created_at, ModelVersion.model).group_by(Image.model_version, ModelVersion.model)
    for field, query in (("download_count", per_version_downloads), ("reaction_count", per_version_reactions)):
        for version_id, model_id, n in query.tuples():
            versions[version_id][field] += n
            models[model_id][field] += n

    up = fn.SUM(Case(None, [(Review.recommended == True, 1)], 0))  # noqa: E712
    review_fields = ("rating_count", "rating_sum", "thumbs_up_count", "thumbs_down_count")
    for column, target in ((Review.version, versions), (Review.model, models)):
        rows = scoped(Review.select(column, fn.COUNT(Review.id), fn.SUM(Review.rating), up,
                                    fn.COUNT(Review.id) - up), Review.created_at, Review.model).group_by(column)
        add(rows.tuples(), target, *review_fields)
    comments = scoped(Comment.select(Comment.model, fn.COUNT(Comment.id)).where(Comment.hidden == False),  # noqa: E712
                      Comment.created_at, Comment.model).group_by(Comment.model)
    add(comments.tuples(), models, "comment_count")
    return dict(versions), dict(models)


def _row(c: dict) -> dict:
    rating = round(c["rating_sum"] / c["rating_count"], 3) if c["rating_count"] else 0.0
    return {**{k: c[k] for k in COUNTS}, "rating": rating}


def rollup(now=None) -> dict[str, int]:
    """Rebuilds every period's rows from the raw events, one atomic swap per period, and sets the all-time
    columns that differ from the AllTime counts. Returns the number of models with stats per period, and
    of rows repaired."""
    now = now or utcnow()
    out = {}
    for period in PERIODS:
        since = now - timedelta(days=PERIOD_DAYS[period]) if period in PERIOD_DAYS else None
        versions, models = counts(since)  # outside the lock: a refresh that races it is fixed next time
        with transaction():
            VersionStat.delete().where(VersionStat.period == period).execute()
            ModelStat.delete().where(ModelStat.period == period).execute()
            for table, key, per in ((VersionStat, "version", versions), (ModelStat, "model", models)):
                rows = [{key: k, "period": period, "updated_at": now, **_row(c)} for k, c in per.items()]
                for batch in chunked(rows, 500):
                    table.insert_many(batch).execute()
            if since is None:
                out["repaired"] = _apply(versions, models)
        out[period] = len(models)
    return out


def _differs(column: str, stored, wanted) -> bool:
    return abs(stored - wanted) > 1e-3 if column == "rating" else stored != wanted  # REAL on PostgreSQL


def _apply(versions: dict[int, dict], models: dict[int, dict], model_ids=None) -> int:
    """Writes the all-time columns that differ from the counts, for the given models (all when None); rows
    without events get zeros. Returns the number of rows changed."""
    changed = []
    for table, columns, per in ((ModelVersion, VERSION_COLUMNS, versions), (Model, MODEL_COLUMNS, models)):
        owner = table.model if table is ModelVersion else table.id
        query = table.select(table.id, owner.alias("owner"), *(getattr(table, c) for c in columns))
        if model_ids is not None:
            query = query.where(owner.in_(model_ids))
        for row in query.dicts():
            want = _row(per.get(row["id"], _blank()))
            update = {c: want[c] for c in columns if _differs(c, row[c], want[c])}
            if update:
                table.update(update).where(table.id == row["id"]).execute()
                changed.append(row["owner"])
    if changed:
        search_changed(sorted(set(changed)))  # the index sorts by downloads and rating
    return len(changed)


def refresh_models(model_ids) -> int:
    """Recomputes the all-time stats of these models and their versions from the raw events."""
    model_ids = list(model_ids)
    with transaction():
        if not isinstance(db.obj, SqliteDatabase):  # SQLite's transaction() holds the write lock already
            list(Model.select(Model.id).where(Model.id.in_(model_ids)).for_update())
        versions, models = counts(model_ids=model_ids)
        return _apply(versions, models, model_ids)
