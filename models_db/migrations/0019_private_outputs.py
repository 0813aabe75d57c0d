"""Generated outputs are private to their owner until posted; a user's default for new outputs. Outputs
made before this migration that are in no post become private too (they were shown to everyone)."""
from peewee import BooleanField

from models_db.migrations import add_column


def up(db):
    add_column(db, "image", "private", BooleanField(default=False))
    db.execute_sql('CREATE INDEX IF NOT EXISTS "image_private" ON "image" ("private")')
    add_column(db, "users", "post_outputs", BooleanField(default=False))
    db.execute_sql('UPDATE "image" SET private = TRUE WHERE post_id IS NULL AND id IN ('
                   ' SELECT image_id FROM "generation_job" WHERE image_id IS NOT NULL)')
