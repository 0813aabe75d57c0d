"""The inbox of processed job messages (idempotent redelivery)."""
from models_db import messages


def up(db):
    db.create_tables(messages.TABLES)
