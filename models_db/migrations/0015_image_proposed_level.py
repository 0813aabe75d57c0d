"""A lower level the community rating game settled on waits for a moderator's confirmation."""
from peewee import IntegerField

from models_db.migrations import add_column


def up(db):
    add_column(db, "image", "proposed_level", IntegerField(null=True))
