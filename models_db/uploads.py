"""Uploads of model files: one row per upload, resumable in chunks, with the outcome of its ingest."""
from __future__ import annotations

import uuid

from peewee import BigIntegerField, CharField, DateTimeField, ForeignKeyField, TextField

import settings
from models_db.accounts import User
from models_db.catalog import ModelFile, ModelVersion
from models_db.db import BaseModel, utcnow

STATES = ("uploading", "processing", "done", "rejected")


class Upload(BaseModel):
    id = CharField(primary_key=True, max_length=32, default=lambda: uuid.uuid4().hex)
    version = ForeignKeyField(ModelVersion, backref="uploads", on_delete="CASCADE")
    user = ForeignKeyField(User, on_delete="CASCADE")
    filename = CharField(max_length=255)
    file_type = CharField(max_length=32, default="Model")
    total_size = BigIntegerField()
    received = BigIntegerField(default=0)
    processed = BigIntegerField(default=0)  # bytes hashed by the ingest actor so far
    state = CharField(max_length=16, default="uploading")
    error = TextField(null=True)
    file = ForeignKeyField(ModelFile, null=True, on_delete="SET NULL")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)


TABLES = [Upload]


def part_path(upload_id: str):
    """Where the bytes of an unfinished upload accumulate (under ATELIER_HOME, shared by web and workers)."""
    folder = settings.get().home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{upload_id}.part"
