"""Job messages whose effect is committed: the inbox that makes a redelivery of such a message a no-op."""
from __future__ import annotations

from datetime import timedelta

from peewee import CharField, DateTimeField

from models_db.db import BaseModel, utcnow


class ProcessedMessage(BaseModel):
    # written by models_db.db.transaction() in the job's own transaction (actors with done_on_commit=True)
    message_id = CharField(primary_key=True, max_length=64)
    created_at = DateTimeField(default=utcnow, index=True)


TABLES = [ProcessedMessage]


def is_processed(message_id: str) -> bool:
    return ProcessedMessage.select().where(ProcessedMessage.message_id == message_id).exists()


def prune(older_than_s: float) -> int:
    """Forgets ids old enough that their message can no longer be delivered again."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    return ProcessedMessage.delete().where(ProcessedMessage.created_at < cutoff).execute()
