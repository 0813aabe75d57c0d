import pytest

from models_db.accounts import User
from models_db.db import on_commit, transaction


def test_on_commit_runs_after_the_outermost_commit():
    seen = []
    with transaction():
        User.create(username="x1")
        with transaction():
            on_commit(lambda: seen.append(User.select().count()))
        assert seen == []
    assert seen == [1]


def test_on_commit_is_dropped_on_rollback():
    seen = []
    with pytest.raises(RuntimeError):
        with transaction():
            User.create(username="x2")
            on_commit(lambda: seen.append("sent"))
            raise RuntimeError
    assert seen == [] and User.select().count() == 0


def test_on_commit_outside_a_transaction_runs_now():
    seen = []
    on_commit(lambda: seen.append(1))
    assert seen == [1]
