"""Images, posts, reactions, reports, community rating; users' browsing level."""
from peewee import IntegerField

from models_db import images
from models_db.migrations import add_column


def up(db):
    db.create_tables(images.TABLES)
    add_column(db, "users", "browsing_level", IntegerField(default=3))
