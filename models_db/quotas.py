"""Per-user generation limits (settings GENERATION_*): a cap on open (queued + running) images, and a budget
per UTC day of images and of cost units. Usage is counted from the jobs themselves, so it is the same for
every web process and failed or cancelled images are given back without any bookkeeping; a per-user Redis
lock makes check-and-store one step across processes."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from peewee import fn

from gpu.request import RequestError
from models_db.db import utcnow

REFERENCE = 512 * 512 * 20  # one cost unit: a 512 × 512 image of 20 steps
OPEN_RETRY_S = 60  # a hint: open images finish in minutes, a batch at a time


def image_cost(width: int, height: int, steps: int, hires_scale: float | None = None, hires_steps: int = 0) -> float:
    """Cost units of one image: pixels × steps of each pass (the hires pass runs at the upscaled size; its
    0 steps means as many as the first pass)."""
    work = width * height * steps
    if hires_scale:
        work += (width * hires_scale) * (height * hires_scale) * (hires_steps or steps)
    return work / REFERENCE


def params_cost(params: dict) -> float:
    """Cost of one image with these batch parameters (models_db.generation GenerationParams)."""
    return image_cost(params["width"], params["height"], params["steps"], params.get("hires_scale"),
                      params.get("hires_steps") or 0)


class QuotaExceeded(RequestError):
    """A request over one of the user's limits: 429 with retryAfter seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__("", message)
        self.retry_after = max(1, int(retry_after))


@dataclass(frozen=True)
class Limits:
    open_images: int | None  # None: no limit
    images_per_day: int | None
    cost_per_day: float | None
    exempt: bool


@dataclass(frozen=True)
class Usage:
    open_images: int
    images_today: int
    cost_today: float


def limits_of(user) -> Limits:
    import settings
    s = settings.get()
    if user.role in s.generation_quota_exempt_roles:
        return Limits(None, None, None, True)
    return Limits(s.generation_max_open_jobs or None, s.generation_daily_images or None,
                  s.generation_daily_cost or None, False)


def day_start() -> datetime:
    """Midnight UTC today, as the database stores times (naive UTC)."""
    return datetime.combine(utcnow().date(), time.min)


def seconds_to_next_day() -> int:
    now = datetime.now(timezone.utc)
    midnight = datetime.combine(now.date() + timedelta(days=1), time.min, timezone.utc)
    return math.ceil((midnight - now).total_seconds())


def usage_of(user) -> Usage:
    from models_db.generation import RUN_FINISHED, GenerationJob, GenerationParams, GenerationRun
    open_images = (GenerationJob.select().join(GenerationRun)
                   .where(GenerationRun.user == user.id, GenerationRun.status.not_in(RUN_FINISHED),
                          GenerationJob.state.in_(("queued", "running"))).count())
    images, cost = (GenerationJob.select(fn.COUNT(GenerationJob.id), fn.SUM(GenerationParams.cost))
                    .join(GenerationRun)
                    .join(GenerationParams, on=((GenerationParams.run == GenerationJob.run)
                                                & (GenerationParams.signature == GenerationJob.signature)))
                    .where(GenerationRun.user == user.id, GenerationRun.created_at >= day_start(),
                           GenerationJob.state.not_in(("failed", "cancelled"))).tuples().get())
    return Usage(open_images, images or 0, float(cost or 0))


def check(user, images: int, cost: float) -> None:
    """Raises QuotaExceeded when queueing `images` more images of `cost` units in all passes a limit."""
    limits = limits_of(user)
    if limits.exempt or not (limits.open_images or limits.images_per_day or limits.cost_per_day):
        return
    used = usage_of(user)
    if limits.open_images and used.open_images + images > limits.open_images:
        raise QuotaExceeded(f"at most {limits.open_images} of your images may be queued or running at once "
                            f"({used.open_images} are, this run adds {images}); wait for some to finish",
                            OPEN_RETRY_S)
    if limits.images_per_day and used.images_today + images > limits.images_per_day:
        raise QuotaExceeded(f"at most {limits.images_per_day} images a day ({used.images_today} queued today, "
                            f"this run adds {images}); the budget renews at midnight UTC", seconds_to_next_day())
    if limits.cost_per_day and used.cost_today + cost > limits.cost_per_day + 1e-9:
        raise QuotaExceeded(f"at most {limits.cost_per_day:g} cost units a day (a 512×512 20-step image is 1; "
                            f"{used.cost_today:.2f} used today, this run costs {cost:.2f}); the budget renews at "
                            "midnight UTC", seconds_to_next_day())


@contextlib.contextmanager
def held(user):
    """While storing a run: no other process checks or stores one for the same user (limits apply)."""
    if limits_of(user).exempt:
        yield
        return
    from redis.exceptions import LockError

    from models_db.redis_store import client, redis_key
    lock = client().lock(redis_key(f"gen:quota-lock:{user.id}"), timeout=300, blocking_timeout=60)
    if not lock.acquire():
        raise QuotaExceeded("another of your requests is still being stored; try again", 5)
    try:
        yield
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def summary(user) -> dict:
    """The user's limits and today's use, for the API and the account page."""
    import settings
    limits, used = limits_of(user), usage_of(user)
    return {"limits": {"openImages": limits.open_images, "imagesPerDay": limits.images_per_day,
                       "costPerDay": limits.cost_per_day},
            "usage": {"openImages": used.open_images, "imagesToday": used.images_today, "costToday": used.cost_today},
            "exempt": limits.exempt, "weight": settings.get().generation_role_weights.get(user.role, 1.0),
            "resetsIn": seconds_to_next_day()}
