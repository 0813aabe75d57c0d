"""Per-period statistics tables."""
from models_db import stats


def up(db):
    db.create_tables(stats.TABLES)
