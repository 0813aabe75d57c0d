"""A run its owner deleted is hidden at once (deleted_at) and removed, with the blobs only it used, by a worker."""
from peewee import DateTimeField

from models_db.migrations import add_column


def up(db):
    add_column(db, "generation_run", "deleted_at", DateTimeField(null=True))
