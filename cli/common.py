"""Shared set-up for CLI commands."""
from __future__ import annotations

import click


def open_db():
    from models_db import db as database
    from models_db.migrations import pending
    database.init()
    waiting = pending()
    if waiting:
        raise click.ClickException(f"the database needs migrations ({', '.join(waiting)}): run `atelier db upgrade`")
    database.db.connect(reuse_if_open=True)
    return database
