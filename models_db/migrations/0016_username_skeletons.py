"""Usernames' skeletons (models_db.names), so that a look-alike of an existing name is refused. Existing
accounts that already look alike keep their names; the later one's skeleton gets its id appended."""
from peewee import CharField

from models_db.accounts import store_username_skeletons
from models_db.migrations import add_column


def up(db):
    add_column(db, "users", "username_skeleton", CharField(max_length=256, null=True))
    store_username_skeletons()
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS users_username_skeleton ON users (username_skeleton)")
