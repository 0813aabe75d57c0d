"""Per-period statistics of models and versions, rolled up from raw events (downloads so far)."""
from __future__ import annotations

from datetime import timedelta

from peewee import CharField, DateTimeField, ForeignKeyField, IntegerField, fn

from models_db.catalog import Model, ModelFile, ModelVersion
from models_db.db import BaseModel, db, utcnow
from models_db.downloads import Download

PERIOD_DAYS = {"Day": 1, "Week": 7, "Month": 30, "Year": 365}


class PeriodStat(BaseModel):
    period = CharField(max_length=8)
    download_count = IntegerField(default=0)
    updated_at = DateTimeField(default=utcnow)


class ModelStat(PeriodStat):
    model = ForeignKeyField(Model, on_delete="CASCADE")

    class Meta:
        indexes = ((("model", "period"), True), (("period", "download_count"), False))


class VersionStat(PeriodStat):
    version = ForeignKeyField(ModelVersion, on_delete="CASCADE")

    class Meta:
        indexes = ((("version", "period"), True),)


TABLES = [ModelStat, VersionStat]


def rollup(now=None) -> dict[str, int]:
    """Rebuilds every windowed period from the raw events, one atomic swap per period."""
    now = now or utcnow()
    out = {}
    for period, days in PERIOD_DAYS.items():
        since = now - timedelta(days=days)
        per_version = (Download.select(ModelFile.version, fn.COUNT(Download.id)).join(ModelFile)
                       .where(Download.created_at >= since).group_by(ModelFile.version).tuples())
        rows = list(per_version)
        per_model: dict[int, int] = {}
        owners = dict(ModelVersion.select(ModelVersion.id, ModelVersion.model)
                      .where(ModelVersion.id.in_([v for v, _ in rows])).tuples()) if rows else {}
        for version_id, count in rows:
            per_model[owners[version_id]] = per_model.get(owners[version_id], 0) + count
        with db.atomic():
            VersionStat.delete().where(VersionStat.period == period).execute()
            ModelStat.delete().where(ModelStat.period == period).execute()
            for chunk in _chunks([{"version": v, "period": period, "download_count": c, "updated_at": now}
                                  for v, c in rows]):
                VersionStat.insert_many(chunk).execute()
            for chunk in _chunks([{"model": mid, "period": period, "download_count": c, "updated_at": now}
                                  for mid, c in per_model.items()]):
                ModelStat.insert_many(chunk).execute()
        out[period] = len(per_model)
    return out


def _chunks(rows: list, size: int = 500):
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def reconcile_download_counts() -> int:
    """Sets every all-time download counter to the number of recorded downloads; returns rows fixed."""
    fixed = 0
    counted = dict(Download.select(ModelFile.version, fn.COUNT(Download.id)).join(ModelFile)
                   .group_by(ModelFile.version).tuples())
    with db.atomic():
        for version_id, model_id, stored in ModelVersion.select(
                ModelVersion.id, ModelVersion.model, ModelVersion.download_count).tuples():
            if stored != counted.get(version_id, 0):
                ModelVersion.update(download_count=counted.get(version_id, 0)).where(
                    ModelVersion.id == version_id).execute()
                fixed += 1
        per_model = dict(ModelVersion.select(ModelVersion.model, fn.SUM(ModelVersion.download_count))
                         .group_by(ModelVersion.model).tuples())
        for model_id, stored in Model.select(Model.id, Model.download_count).tuples():
            if stored != (per_model.get(model_id) or 0):
                Model.update(download_count=per_model.get(model_id) or 0).where(Model.id == model_id).execute()
                fixed += 1
    return fixed
