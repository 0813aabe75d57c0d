"""Showcase images (the version owner's) apart from community images of a version; existing images of a
version count as showcase when their uploader owns the model or is staff."""
from peewee import BooleanField

from models_db.migrations import add_column


def up(db):
    add_column(db, "image", "showcase", BooleanField(default=False))
    db.execute_sql(
        'UPDATE "image" SET showcase = TRUE WHERE model_version_id IN ('
        ' SELECT v.id FROM "model_version" v JOIN "model" m ON m.id = v.model_id'
        ' JOIN "users" u ON u.id = "image".user_id'
        " WHERE m.owner_id = u.id OR u.role IN ('moderator', 'admin'))")
