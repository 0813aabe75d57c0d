"""Usernames' skeletons (models_db.names), so that a look-alike of an existing name is refused. Existing
accounts that already look alike keep their names; the later one's skeleton gets its id appended."""
from peewee import CharField

from models_db import names
from models_db.accounts import User
from models_db.migrations import add_column


def up(db):
    add_column(db, "users", "username_skeleton", CharField(max_length=256, null=True))
    taken = set()
    for user in User.select(User.id, User.username).order_by(User.id):
        key = names.skeleton(user.username)
        key = key if key not in taken else f"{key}#{user.id}"
        taken.add(key)
        User.update(username_skeleton=key).where(User.id == user.id).execute()
    db.execute_sql("CREATE UNIQUE INDEX IF NOT EXISTS users_username_skeleton ON users (username_skeleton)")
