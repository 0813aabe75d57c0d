"""A generation run's Server-Sent Events without a request thread: an asyncio generator over the run's
Redis pub/sub channel and kept event log. web/asgi.py serves it on the server's event loop once the Flask
view has authorised it; under a plain WSGI server (the test client, `flask run`) it runs on a private
loop in the request's thread."""
from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

import settings
from jobs import generation as jobs
from models_db.redis_store import client, give_back_place, places_key, redis_url

HANDOFF = "atelier.streams"  # ASGI scope key: a list where the view leaves the Stream it authorised
log = logging.getLogger("atelier.web.streams")


@dataclass(frozen=True)
class Stream:
    run_id: int
    after: int  # the last event id the client has (-1: none)
    place: str  # the user's open-stream places (models_db.redis_store.take_place) and the one this holds
    token: str


def log_key(run_id: int) -> str:
    return jobs.channel(run_id) + ":log"


def nothing_more(run_id: int, after: int, finished: bool) -> bool:
    """The stream would send nothing: the run's event log has expired, or the run has ended and the
    client has seen that end."""
    if not client().exists(log_key(run_id)):
        return True
    return finished and after >= 0 and any(jobs.ends_run(json.loads(raw))
                                           for raw in client().lrange(log_key(run_id), 0, after))


def frame(event: dict, raw) -> bytes:
    raw = raw if isinstance(raw, str) else raw.decode()
    head = f"id: {event['seq']}\n" if "seq" in event else ""
    return f"{head}event: {event['event']}\ndata: {raw}\n\n".encode()


async def events(redis: aioredis.Redis, stream: Stream):
    """Every kept event after stream.after, then live ones (step events are live only), until the run
    ends, its event log expires or the stream's lifetime is over; a comment keeps a quiet stream alive."""
    s = settings.get()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(jobs.channel(stream.run_id))
    try:
        seen = stream.after
        for raw in await redis.lrange(log_key(stream.run_id), seen + 1, -1):
            event = json.loads(raw)
            seen = event["seq"]
            yield frame(event, raw)
            if jobs.ends_run(event):
                return
        ends = spoke = time.monotonic()
        ends += s.stream_max_lifetime_s
        while (now := time.monotonic()) < ends:
            message = await pubsub.get_message(timeout=max(0.0, min(ends, spoke + s.stream_keepalive_s) - now))
            if message is None:
                if time.monotonic() - spoke >= s.stream_keepalive_s:
                    if not await redis.exists(log_key(stream.run_id)):
                        return  # the run's events have expired
                    spoke = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            event = json.loads(message["data"])
            if event.get("seq", seen + 1) <= seen:
                continue  # replayed above already
            seen, spoke = event.get("seq", seen), time.monotonic()
            yield frame(event, message["data"])
            if jobs.ends_run(event):
                return
    finally:
        await pubsub.aclose()


_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loop_client() -> aioredis.Redis:
    """One asyncio Redis client per event loop (a web worker process has one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = aioredis.Redis.from_url(redis_url())
    return _clients[loop]


async def serve(stream: Stream, receive, send) -> None:
    """The response body of an ASGI request whose headers are sent: the events until the stream ends or
    the client goes away. The user's place is given back either way."""
    redis = loop_client()

    async def pump():
        body = events(redis, stream)
        try:
            async for chunk in body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except RedisError as exc:  # the client reconnects with Last-Event-ID
            log.warning("event stream of run %s cut: %s", stream.run_id, exc)
        finally:
            await body.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def gone():
        while (await receive())["type"] != "http.disconnect":
            pass

    tasks = [asyncio.ensure_future(pump()), asyncio.ensure_future(gone())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.zrem(places_key(stream.place), stream.token)


def blocking(stream: Stream):
    """The same events for a WSGI server, on a private loop in the request's thread."""
    loop = asyncio.new_event_loop()
    redis = aioredis.Redis.from_url(redis_url())
    body = events(redis, stream)
    try:
        while True:
            try:
                yield loop.run_until_complete(anext(body))
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(body.aclose())
        loop.run_until_complete(redis.aclose())
        loop.close()
        give_back_place(stream.place, stream.token)
