import time

import pytest

from models_db.accounts import User
from models_db.db import on_commit, transaction
from tests.conftest import PG_BASE


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


def test_compiled_queries_run_again_with_each_calls_values():
    from models_db.db import compiled_dicts, compiled_tuples, id_set
    users = [User.create(username=f"c{i}", is_active=i != 1) for i in range(4)]

    def build(ids, min_id, skip):
        return (User.select(User.id, User.username, User.is_active)
                .where(User.id.in_(id_set(ids)), User.id >= min_id, User.username != skip).order_by(User.id))

    first = compiled_dicts(("test users",), build, [u.id for u in users], users[1].id, "c0")
    assert [(r["username"], r["is_active"]) for r in first] == [("c1", False), ("c2", True), ("c3", True)]
    again = compiled_dicts(("test users",), build, [users[0].id, users[3].id], 0, "c0")
    assert [r["username"] for r in again] == ["c3"] and again[0]["is_active"] is True  # a bool, not 1
    assert [row[:2] for row in compiled_tuples(("test users",), build, [users[2].id], 0, "c2")] == []
    assert [row[:2] for row in compiled_tuples(("test users",), build, [users[2].id], 0, "x")] == [(users[2].id, "c2")]

    with pytest.raises(ValueError, match="placeholder"):
        compiled_tuples(("test derived",), lambda most: User.select(User.id).limit(2 * most), 5)
    with pytest.raises(ValueError, match="placeholder"):  # startswith() makes its own 'c%' parameter
        compiled_tuples(("test derived text",), lambda prefix: User.select(User.id).where(
            User.username.startswith(prefix)), "c")


@pytest.mark.skipif(not PG_BASE, reason="PostgreSQL's connection pool")
def test_pool_pings_only_connections_idle_past_the_bypass_window():
    import psycopg2
    from peewee import OperationalError

    from models_db import db as database
    pool = database.db.obj

    def backend_pid() -> int:
        with database.db.connection_context():
            return database.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]

    def terminate(pid: int) -> None:
        admin = psycopg2.connect(PG_BASE)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()

    pool.close_all()
    first = backend_pid()
    assert backend_pid() == first  # handed back and out again: the same connection
    terminate(first)
    database.db.connect()  # handed back just now, so handed out without a ping: its query finds it dead
    with pytest.raises(OperationalError):
        database.db.execute_sql("SELECT 1")
    database.db.close()  # a dead connection is dropped on check-in
    second = backend_pid()
    assert second != first

    terminate(second)
    time.sleep(database.ALIVE_BYPASS_S + 0.1)
    third = backend_pid()  # idle past the window: pinged, found dead, replaced before any query sees it
    assert third not in (first, second)
