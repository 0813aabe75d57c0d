"""The creator's own nsfw flag, kept apart from the levels its showcase images set (which overwrote it).
Existing models keep their nsfw flag as declared: it can no longer be told apart from an image's."""
from peewee import BooleanField

from models_db.migrations import add_column


def up(db):
    add_column(db, "model", "creator_nsfw", BooleanField(default=False))
    db.execute_sql('UPDATE "model" SET creator_nsfw = nsfw')
