"""Reviews and comments on models; period stats of ratings, thumbs, comments and reactions."""
from peewee import FloatField, IntegerField

from models_db import reviews
from models_db.migrations import add_column


def up(db):
    db.create_tables(reviews.TABLES)
    for table in ("model_stat", "version_stat"):
        for name in ("rating_count", "thumbs_up_count", "thumbs_down_count", "comment_count", "reaction_count"):
            add_column(db, table, name, IntegerField(default=0))
        add_column(db, table, "rating", FloatField(default=0))
    db.execute_sql("CREATE INDEX IF NOT EXISTS model_stat_period_rating ON model_stat (period, rating)")
