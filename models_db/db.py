"""Database handle (a peewee DatabaseProxy), connection set-up and after-commit hooks."""
from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime, timezone
from urllib.parse import urlparse

from peewee import (
    CharField,
    DatabaseProxy,
    DateTimeField,
    Field,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

import settings

db = DatabaseProxy()
_state = threading.local()
_state_url: dict = {}


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


ALIVE_BYPASS_S = 0.5  # HikariCP's default aliveBypassWindowMs


class PooledPostgres(PooledPostgresqlDatabase):
    """peewee's pool pings every connection it hands out (`SELECT 1`, a round trip) while holding the
    database lock, so a process's threads queue behind each other's pings. As HikariCP does, a
    connection handed back less than ALIVE_BYPASS_S ago is handed out without one (its local status is
    still checked); one that died in that window fails its query, is dropped on check-in, and the
    job's retry or the next request gets another."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._returned_at: dict[int, float] = {}

    def _is_closed(self, conn):
        returned = self._returned_at.get(self.conn_key(conn), 0.0)
        if (not conn.closed and time.monotonic() - returned < ALIVE_BYPASS_S
                and self._adapter.txn_status(conn) == self._adapter.txn_idle):
            return False
        if super()._is_closed(conn):
            self._returned_at.pop(self.conn_key(conn), None)  # the pool drops it without _close_raw
            return True
        return False

    def _close(self, conn, close_conn=False):
        self._returned_at[self.conn_key(conn)] = time.monotonic()
        super()._close(conn, close_conn)

    def _close_raw(self, conn):
        self._returned_at.pop(self.conn_key(conn), None)
        super()._close_raw(conn)


def open_database(url: str):
    """A pooled connection per thread: close() hands it back to the pool instead of dropping it."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] or ":memory:"
        return PooledSqliteDatabase(path, max_connections=32, stale_timeout=600, timeout=30,
                                    check_same_thread=False, pragmas={
                                        "journal_mode": "wal", "foreign_keys": 1, "synchronous": "normal",
                                        "busy_timeout": 30000, "cache_size": -65536, "mmap_size": 1 << 30})
    if parsed.scheme in ("postgres", "postgresql"):
        return PooledPostgres(
            (parsed.path or "/").lstrip("/") or "postgres", max_connections=32, stale_timeout=600,
            host=parsed.hostname,
            port=parsed.port or 5432, user=parsed.username, password=parsed.password)
    raise SystemExit(f"DATABASE_URL: unsupported scheme {parsed.scheme!r} (use sqlite:/// or postgresql://)")


def init(url: str | None = None):
    """Point the proxy at the configured database (idempotent for the same URL)."""
    url = url or settings.get().database_url
    if _state_url.get("url") != url:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            from pathlib import Path
            path = Path(url[len("sqlite:///"):])
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if file == path or file.exists():  # SQLite makes its -wal and -shm with the file's mode
                    settings.private_file(file)
        db.initialize(open_database(url))
        _state_url["url"] = url
    return db.obj


def id_param(ids):
    """The one bound parameter of id_set(ids)."""
    import json

    from peewee import SqliteDatabase
    ids = [int(i) for i in ids]
    return json.dumps(ids) if isinstance(db.obj, SqliteDatabase) else ids


def id_set(ids):
    """A set of integer ids as ONE bound parameter, for `column.in_(id_set(ids))`: peewee compiles a
    long IN list value by value, which costs more than the query itself."""
    from peewee import SQL, SqliteDatabase
    sqlite = isinstance(db.obj, SqliteDatabase)
    return SQL("(SELECT value FROM json_each(?))" if sqlite else "(SELECT unnest(%s::bigint[]))", [id_param(ids)])


_compiled: OrderedDict = OrderedDict()  # the most recently used COMPILED_KEPT compiled queries
COMPILED_KEPT = 512
_compiled_lock = threading.Lock()
_SENTINEL = -(10 ** 15)


def compiled_dicts(key: tuple, build, *values) -> list[dict]:
    """The .dicts() rows of build(*values), compiled to SQL once per process and key: compiling a wide
    peewee select, and converting every column of every row, cost more than running it on a page of
    ids. Each value is an id list (for id_set), an integer or a string, used by build as it is (a value
    computed from one inside build stays what it was at the first call); the SQL of build's query may
    depend only on `key`, never on the values."""
    entry, cursor = _run_compiled(key, build, values)
    if entry[4] is None:
        entry[4] = row_reader(entry[0], cursor)
    names, convert = entry[4]
    rows = []
    for row in cursor.fetchall():
        item = dict(zip(names, row))
        for i, python_value in convert:
            item[names[i]] = python_value(row[i])
        rows.append(item)
    return rows


def compiled_tuples(key: tuple, build, *values) -> list[tuple]:
    """As compiled_dicts, the rows as the driver returns them (for integer and text columns)."""
    return _run_compiled(key, build, values)[1].fetchall()


def _run_compiled(key: tuple, build, values: tuple):
    with _compiled_lock:
        entry = _compiled.get((db.obj, key))
        if entry is not None:
            _compiled.move_to_end((db.obj, key))
    if entry is None:
        sentinels = [f"\x00sentinel {i}\x00" if isinstance(v, str) else _SENTINEL - i for i, v in enumerate(values)]
        query = build(*[[s] if isinstance(v, list) else s for s, v in zip(sentinels, values)]).dicts()
        sql, params = query.sql()
        slots = [(pos, i) for pos, p in enumerate(params) for i, s in enumerate(sentinels)
                 if p == s or (isinstance(s, int) and p == id_param([s]))]
        taken = {pos for pos, _ in slots}
        if any(pos not in taken and ((isinstance(p, int) and p < _SENTINEL // 2)
                                     or (isinstance(p, str) and "\x00sentinel" in p))
               for pos, p in enumerate(params)):
            raise ValueError(f"{key}: build computed a parameter from a placeholder; pass it as a value")
        entry = [query, sql, params, slots, None]  # + the row reader, once run
        with _compiled_lock:
            _compiled[(db.obj, key)] = entry
            while len(_compiled) > COMPILED_KEPT:
                _compiled.popitem(last=False)
    query, sql, params, slots, _ = entry
    params = list(params)
    for pos, i in slots:
        params[pos] = id_param(values[i]) if isinstance(values[i], list) else values[i]
    return entry, db.execute_sql(sql, params)


def row_reader(query, cursor) -> tuple[list[str], list]:
    """peewee's names for the columns, and the converters that change a value (booleans, dates…): the
    database driver returns integers, floats and strings as they are."""
    as_is = {kind.adapt for kind in (IntegerField, FloatField, CharField, TextField)}

    def plain(field) -> bool:
        field = field.rel_field if isinstance(field, ForeignKeyField) else field
        return type(field).python_value is Field.python_value and type(field).adapt in as_is

    def converter(field, convert):
        return functools.partial(read_datetime, convert) if type(field) is DateTimeField else convert

    wrapper = query._get_cursor_wrapper(cursor)
    wrapper.initialize()
    return wrapper.unique_columns, [(i, converter(field, convert)) for i, (convert, field) in
                                    enumerate(zip(wrapper.converters, wrapper.fields))
                                    if convert is not None and not plain(field)]


def read_datetime(slow, value):
    """SQLite's datetime text through the C parser; peewee's format list for anything else."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return slow(value)


@contextmanager
def transaction():
    """db.atomic() whose on_commit() callbacks run only after the outermost block commits. On SQLite the
    outermost block takes the write lock at once (BEGIN IMMEDIATE): a transaction that reads and then
    writes would otherwise fail with "database is locked" when another connection wrote in between.
    Inside a done_on_commit() job, the outermost block also records the job's message as processed."""
    outer = getattr(_state, "hooks", None) is None
    if outer:
        _state.hooks = []
    from peewee import SqliteDatabase
    immediate = outer and isinstance(db.obj, SqliteDatabase) and not db.in_transaction()
    message_id = getattr(_state, "message_id", None) if outer else None
    try:
        with (db.atomic("IMMEDIATE") if immediate else db.atomic()):
            yield
            if message_id:  # "this message is done" commits with the job's effect
                from models_db.messages import ProcessedMessage
                ProcessedMessage.insert(message_id=message_id).on_conflict_ignore().execute()
    except BaseException:
        if outer:
            _state.hooks = None
        raise
    if outer:
        hooks, _state.hooks = _state.hooks, None
        for hook in hooks:
            hook()


def done_on_commit(message_id: str | None) -> None:
    """Set by the job middleware around an actor declared done_on_commit=True: the outermost transaction()
    of this thread also records message_id in the inbox (models_db.messages). None: stop recording."""
    _state.message_id = message_id


def on_commit(callback) -> None:
    """Run callback after the surrounding transaction() commits, or now if there is none."""
    hooks = getattr(_state, "hooks", None)
    if hooks is None:
        callback()
    else:
        hooks.append(callback)
