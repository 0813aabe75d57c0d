"""Messages to users (why a file was refused, a finished job...)."""
from __future__ import annotations

from peewee import CharField, DateTimeField, ForeignKeyField, TextField

from models_db.accounts import User
from models_db.db import BaseModel, utcnow


class Notification(BaseModel):
    user = ForeignKeyField(User, backref="notifications", on_delete="CASCADE")
    kind = CharField(max_length=32)
    message = TextField()
    # a caller-chosen key makes sending idempotent under at-least-once delivery
    key = CharField(max_length=100, unique=True)
    created_at = DateTimeField(default=utcnow)
    read_at = DateTimeField(null=True)


TABLES = [Notification]


def notify(user_id: int, kind: str, message: str, key: str) -> bool:
    return bool(Notification.insert(user=user_id, kind=kind, message=message, key=key)
                .on_conflict_ignore().as_rowcount().execute())
