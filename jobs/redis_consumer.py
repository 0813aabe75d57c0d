"""A Redis broker whose consumers refill in batches and send acks in batches.

Dramatiq's Redis consumer, while every prefetched message is still being worked on, polls with a growing
sleep (5-10 ms, then 10-20 ms...), so worker threads sit idle after a burst of short jobs; and each worker
thread acks its message with a round trip of its own. Here:
- the consumer waits until half of its prefetched messages are done (a finished message wakes it), then
  fetches the other half in one call, while the worker threads still have the first half to work on;
- a worker thread only notes its finished message; the consumer sends the acks noted so far in one call
  before it fetches, at each poll of an empty queue, and when it closes. Noted acks live on the broker,
  so a consumer restarted after a connection error sends those of the one before.
An ack that was noted but not yet sent when the process dies means the message is delivered again, as
with a worker killed right before its ack: actors are idempotent. Nacks (dead letters) stay immediate."""
from __future__ import annotations

import threading

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message

# as dispatch.lua's "ack", for many messages: forget each one still leased to this worker
ACK_MANY = """
local n = 0
for i = 1, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
        n = n + 1
    end
end
return n
"""


class BatchingConsumer(_RedisConsumer):
    def __init__(self, broker, queue_name, prefetch, timeout):
        super().__init__(broker, queue_name, prefetch, timeout)
        self.wake = threading.Event()

    def _full(self) -> bool:
        return self.outstanding_message_count > self.prefetch // 2

    def ack(self, message):
        self.broker.note_ack(self.queue_name, message.options["redis_message_id"])
        self.queued_message_ids.discard(message.message_id)
        if not self._full():
            self.wake.set()

    def nack(self, message):
        try:
            super().nack(message)
        finally:
            self.wake.set()

    def close(self):
        try:
            self.broker.send_acks(self.queue_name)
        except redis.ConnectionError:
            pass  # kept on the broker for the next consumer of this queue
        super().close()

    def __next__(self):
        try:
            while True:
                if self.message_cache:
                    self.misses = 0
                    message = Message.decode(self.message_cache.pop(0))
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                self.wake.clear()
                if self._full():
                    self.wake.wait(self.timeout / 1000)
                    if self._full():
                        return None  # the worker loop handles delayed messages and shutdown, then asks again
                self.broker.send_acks(self.queue_name)
                self.message_cache = self.broker.do_fetch(self.queue_name,
                                                          self.prefetch - self.outstanding_message_count)
                if not self.message_cache:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    self.wake.wait(backoff_ms / 1000)
                    return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None


class BatchingRedisBroker(RedisBroker):
    consumer_class = BatchingConsumer

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ack_many = self.client.register_script(ACK_MANY)
        self.unsent_acks: dict[str, list[str]] = {}
        self.acks_lock = threading.Lock()

    def note_ack(self, queue_name: str, redis_message_id: str) -> None:
        with self.acks_lock:
            self.unsent_acks.setdefault(queue_name, []).append(redis_message_id)

    def send_acks(self, queue_name: str) -> int:
        with self.acks_lock:
            ids = self.unsent_acks.pop(queue_name, None)
        if not ids:
            return 0
        try:
            return self.ack_many(keys=[f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}",
                                       f"{self.namespace}:{queue_name}.msgs"], args=ids)
        except redis.ConnectionError:
            with self.acks_lock:
                self.unsent_acks.setdefault(queue_name, [])[:0] = ids
            raise
