"""Leaderboards."""
from models_db import leaderboards


def up(db):
    db.create_tables(leaderboards.TABLES)
