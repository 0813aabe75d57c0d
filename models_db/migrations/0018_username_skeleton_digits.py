"""Skeletons fold '0' into 'o' and '1', 'i' into 'l' now ("b0b" beside "bob", "AIice" before "alice"):
computed again; accounts that only now look alike keep their names."""
from models_db.accounts import store_username_skeletons


def up(db):
    store_username_skeletons()
