"""Accounts, catalog, uploads, downloads, notifications."""
from models_db import accounts, catalog, downloads, notifications, uploads


def up(db):
    db.create_tables([*accounts.TABLES, *catalog.TABLES, *uploads.TABLES,
                      *downloads.TABLES, *notifications.TABLES])
