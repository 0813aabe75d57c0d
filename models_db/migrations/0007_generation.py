"""Generation runs and their jobs."""
from models_db import generation


def up(db):
    db.create_tables(generation.TABLES)
