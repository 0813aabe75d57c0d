"""Generation events as Server-Sent Events without a request thread: an asyncio generator over a Redis
pub/sub channel and kept event log, of one run (RunFeed) or of all a user's runs (UserFeed). web/asgi.py
serves it on the server's event loop once the Flask view has handed it off (web/handoff.py); under a
plain WSGI server (the test client, `flask run`) it runs on a private loop in the request's thread."""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

import settings
from jobs import generation as jobs
from models_db.redis_store import client, give_back_place
from web.handoff import give_back_place_soon, loop_client, private_loop, while_connected, without

log = logging.getLogger("atelier.web.streams")


@dataclass(frozen=True)
class RunFeed:
    """A run's events: its kept log (a list: an event's "seq" is its index), then its live channel."""
    run_id: int
    after: int  # the last event id the client has (-1: none)
    position = "seq"

    @property
    def channel(self) -> str:
        return jobs.channel(self.run_id)

    async def kept(self, redis: aioredis.Redis) -> list:
        return await redis.lrange(jobs.run_log_key(self.run_id), self.after + 1, -1)

    def ends(self, event: dict) -> bool:
        return jobs.ends_run(event)

    async def expired(self, redis: aioredis.Redis) -> bool:
        return not await redis.exists(jobs.run_log_key(self.run_id))


RESET = b'{"event": "reset"}'


@dataclass(frozen=True)
class UserFeed:
    """Every event of a user's runs: the user's kept events (a sorted set scored by "useq"), then the user's
    live channel; it ends only with the stream's lifetime. `reset` first when some events after `after`
    are no longer kept: the client reads its runs again."""
    user_id: int
    after: int
    reset: bool = False
    position = "useq"

    @property
    def channel(self) -> str:
        return jobs.user_channel(self.user_id)

    async def kept(self, redis: aioredis.Redis) -> list:
        kept = await redis.zrangebyscore(jobs.user_log_key(self.user_id), f"({self.after}", "+inf")
        return [RESET, *kept] if self.reset else kept

    def ends(self, event: dict) -> bool:
        return False

    async def expired(self, redis: aioredis.Redis) -> bool:
        return False


def user_feed(user_id: int, after: int) -> UserFeed:
    """The user's events after `after` (-1: from now on)."""
    now = jobs.user_position(user_id)
    if after < 0:
        return UserFeed(user_id, now)
    oldest = client().zrange(jobs.user_log_key(user_id), 0, 0, withscores=True)
    lost = after > now or (after < now and (not oldest or oldest[0][1] > after + 1))
    return UserFeed(user_id, now if lost else after, reset=lost)


@dataclass(frozen=True)
class Stream:
    feed: RunFeed | UserFeed
    place: str  # the user's open-stream places (models_db.redis_store.take_place) and the one this holds
    token: str

    async def serve(self, start: dict, receive, send, threads: Executor) -> None:
        """The view's headers, then the events until the stream ends or the client goes away. The user's
        place is given back either way."""
        async def pump():
            await send({**start, "headers": without(start["headers"], b"content-length")})
            body = events(self.feed, settings.get().stream_max_lifetime_s)
            try:
                async for chunk in body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except RedisError as exc:  # the client reconnects with Last-Event-ID
                log.warning("event stream %s cut: %s", self.feed, exc)
            finally:
                await body.aclose()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        try:
            await while_connected(receive, pump())
        finally:
            await give_back_place_soon(self.place, self.token)

    def blocking(self):
        """The same events for a WSGI server, on a private loop in the request's thread."""
        with private_loop() as loop:
            body = events(self.feed, settings.get().stream_max_lifetime_s)
            try:
                while True:
                    try:
                        yield loop.run_until_complete(anext(body))
                    except StopAsyncIteration:
                        return
            finally:
                loop.run_until_complete(body.aclose())
                give_back_place(self.place, self.token)


def nothing_more(run_id: int, after: int, finished: bool) -> bool:
    """The stream would send nothing: the run's event log has expired, or the run has ended and the
    client has seen that end."""
    if not client().exists(jobs.run_log_key(run_id)):
        return True
    return finished and after >= 0 and any(jobs.ends_run(json.loads(raw))
                                           for raw in client().lrange(jobs.run_log_key(run_id), 0, after))


def frame(event: dict, raw, position: str) -> bytes:
    raw = raw if isinstance(raw, str) else raw.decode()
    head = f"id: {event[position]}\n" if position in event else ""
    return f"{head}event: {event['event']}\ndata: {raw}\n\n".encode()


async def events(feed: RunFeed | UserFeed, lifetime_s: float):
    """Every kept event after feed.after, then live ones (step events are live only), until the feed ends
    (its run's end), its kept events expire or lifetime_s is over; a comment keeps a quiet stream alive."""
    s, redis = settings.get(), loop_client()
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(feed.channel)
    try:
        seen = feed.after
        for raw in await feed.kept(redis):
            event = json.loads(raw)
            seen = event.get(feed.position, seen)
            yield frame(event, raw, feed.position)
            if feed.ends(event):
                return
        ends = spoke = time.monotonic()
        ends += lifetime_s
        while (now := time.monotonic()) < ends:
            message = await pubsub.get_message(timeout=max(0.0, min(ends, spoke + s.stream_keepalive_s) - now))
            if message is None:
                if time.monotonic() - spoke >= s.stream_keepalive_s:
                    if await feed.expired(redis):
                        return
                    spoke = time.monotonic()
                    yield b": keep-alive\n\n"
                continue
            event = json.loads(message["data"])
            if event.get(feed.position, seen + 1) <= seen:
                continue  # replayed above already
            seen, spoke = event.get(feed.position, seen), time.monotonic()
            yield frame(event, message["data"], feed.position)
            if feed.ends(event):
                return
    finally:
        await pubsub.aclose()
