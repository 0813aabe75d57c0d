"""Work a Flask view hands to the ASGI server's event loop (web/asgi.py) once it has authorised the request,
so that a long wait holds no request thread and no database connection: event streams (web/streams.py),
/sdapi calls waiting for their images (web/sdapi.py). Under a plain WSGI server (the test client, `flask
run`) the view runs the same coroutines on a private loop in its own thread."""
from __future__ import annotations

import asyncio
import contextlib
import weakref
from concurrent.futures import Executor
from typing import Protocol

import redis.asyncio as aioredis
from flask import request

from models_db.redis_store import places_key, redis_url

HANDOFF = "atelier.handoff"  # ASGI scope key: a list where the view leaves its Work


class Work(Protocol):
    async def serve(self, start: dict, receive, send, threads: Executor) -> None:
        """Answers the request. start: the view's http.response.start message (status and headers);
        threads: the request threads, for short blocking calls (database reads)."""


def hand_off(work: Work) -> bool:
    """Leaves the answer to the ASGI server, which starts from the view's response (status, headers):
    False under a WSGI server, where the view must answer itself."""
    handoff = request.environ.get("asgi.scope", {}).get(HANDOFF)
    if handoff is None:
        return False
    handoff.append(work)
    return True


_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loop_client() -> aioredis.Redis:
    """One asyncio Redis client per event loop (a web worker process has one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = aioredis.Redis.from_url(redis_url())
    return _clients[loop]


async def give_back_place_soon(name: str, token: str) -> None:
    """models_db.redis_store.give_back_place on the event loop."""
    await loop_client().zrem(places_key(name), token)


@contextlib.contextmanager
def private_loop():
    """An event loop for this thread (the WSGI fallback), closed with its Redis client."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        redis = _clients.pop(loop, None)
        if redis is not None:
            loop.run_until_complete(redis.aclose())
        loop.close()


async def while_connected(receive, work) -> bool:
    """Awaits work unless the client goes away first (then work is cancelled): True when it finished."""
    async def gone():
        while (await receive())["type"] != "http.disconnect":
            pass
    task, watch = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for each in (task, watch):
            each.cancel()
        await asyncio.gather(task, watch, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()  # its error, if any
    return True


def without(headers: list, *names: bytes) -> list:
    return [h for h in headers if h[0].lower() not in names]
