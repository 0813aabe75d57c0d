"""One row per download: makes the counting actor idempotent and keeps history for period stats."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField

from models_db.accounts import User
from models_db.catalog import Model, ModelFile, ModelVersion, search_changed
from models_db.db import BaseModel, transaction, utcnow


class Download(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    file = ForeignKeyField(ModelFile, on_delete="CASCADE")
    user = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow, index=True)


TABLES = [Download]


def record(download_id: str, file_id: int, user_id: int | None) -> bool:
    """Counts a download once, however often it is recorded. True when it was new."""
    with transaction():
        inserted = (Download.insert(id=download_id, file=file_id, user=user_id)
                    .on_conflict_ignore().as_rowcount().execute())
        if not inserted:
            return False
        version_id = ModelFile.select(ModelFile.version).where(ModelFile.id == file_id).scalar()
        ModelVersion.update(download_count=ModelVersion.download_count + 1).where(
            ModelVersion.id == version_id).execute()
        model_id = ModelVersion.select(ModelVersion.model).where(ModelVersion.id == version_id).scalar()
        Model.update(download_count=Model.download_count + 1).where(Model.id == model_id).execute()
        search_changed([model_id])  # the index sorts by downloads
    return True
