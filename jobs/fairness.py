"""Fair shares of the GPU workers across users: weighted fair queuing by "pass" (stride scheduling).

Each user has a pass in Redis: the GPU work (cost units, models_db.quotas) their images have had, over the
weight of their role (GENERATION_ROLE_WEIGHTS). A GPU message is a work token: it leads a batch with the
oldest claimable job of the user with the lowest pass, whichever job the message was sent for. A user who
was idle starts again at the virtual time (the pass of the last user chosen) and banks no credit, so a
newcomer is served at the next batch even behind another user's 10,000 images. The batch is filled with
compatible jobs (same signature) of every user, round-robin in the same order (one of each user's oldest,
then a second of each...), so batching across users stays and nobody's images ride for free: every user in
a batch is charged for their images in it. Passes are a fairness hint only: two workers choosing at once may
pick the same user, and the claims in the database still decide who runs what."""
from __future__ import annotations

from peewee import fn

from models_db import generation as gen
from models_db.accounts import User
from models_db.redis_store import client, redis_key

STATE_TTL_S = 7 * 24 * 3600


def pass_key() -> str:
    return redis_key("gen:fair:pass")


def vtime_key() -> str:
    return redis_key("gen:fair:vtime")


def weight(role: str) -> float:
    import settings
    return settings.get().generation_role_weights.get(role, 1.0)


def backlog(lease_s: float) -> list[tuple[int, int]]:
    """(user id, their oldest claimable job id) of every user with claimable jobs."""
    return list(gen.GenerationJob.select(gen.GenerationRun.user, fn.MIN(gen.GenerationJob.id))
                .join(gen.GenerationRun)
                .where(gen.claimable(lease_s), ~gen.spent())
                .group_by(gen.GenerationRun.user).tuples())


def passes(user_ids: list[int]) -> dict[int, float]:
    """Each user's effective pass: never below the virtual time."""
    pipe = client().pipeline(transaction=False)
    pipe.get(vtime_key())
    pipe.hmget(pass_key(), user_ids or [0])
    vtime, values = pipe.execute()
    return {u: max(float(vtime or 0), float(v or 0)) for u, v in zip(user_ids, values)}


def fair_order(lease_s: float) -> list[tuple[int, int, float]]:
    """(user id, oldest claimable job id, pass) of the users with claimable jobs, the next to serve first
    (lowest pass; between equals, who has waited longest)."""
    waiting = backlog(lease_s)
    effective = passes([u for u, _ in waiting])
    return sorted(((u, job_id, effective[u]) for u, job_id in waiting), key=lambda t: (t[2], t[1]))


def fill(leader: gen.GenerationJob, room: int, lease_s: float, order: list[int]) -> list[int]:
    """Up to `room` claimable jobs that can share the leader's batch: round-robin over their users (the
    leader's first, then in fair order), each user's oldest first."""
    if room <= 0:
        return []
    rank = fn.ROW_NUMBER().over(partition_by=[gen.GenerationRun.user], order_by=[gen.GenerationJob.id])
    ranked = (gen.GenerationJob.select(gen.GenerationJob.id.alias("job_id"), gen.GenerationRun.user.alias("user_id"),
                                       rank.alias("rn"))
              .join(gen.GenerationRun)
              .where(gen.GenerationJob.signature == leader.signature, gen.GenerationJob.id != leader.id,
                     gen.claimable(lease_s)))
    rows = (gen.GenerationJob.select(ranked.c.job_id, ranked.c.user_id, ranked.c.rn).from_(ranked)
            .where(ranked.c.rn <= room).order_by(ranked.c.rn, ranked.c.job_id).limit(room * 8).tuples())
    place = {user_id: i for i, user_id in enumerate(order)}
    rows = sorted(rows, key=lambda r: (r[2], place.get(r[1], len(place)), r[0]))
    return [job_id for job_id, _, _ in rows[:room]]


_CHARGE = """
local vtime = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = tonumber(ARGV[1])
if start > vtime then
    vtime = start
    redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
for i = 3, #ARGV, 2 do
    local p = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
    if p < vtime then p = vtime end
    redis.call('HSET', KEYS[1], ARGV[i], string.format('%.17g', p + tonumber(ARGV[i + 1])))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def charge(start: float, claimed: list[int], cost_per_image: float) -> dict[int, str]:
    """Moves the virtual time to the chosen user's pass and charges every user in the batch for their
    images in it (over their weight). Returns job id -> role of its user (for the wait-time metric)."""
    rows = list(gen.GenerationJob.select(gen.GenerationJob.id, gen.GenerationRun.user, User.role)
                .join(gen.GenerationRun).join(User).where(gen.GenerationJob.id.in_(claimed)).tuples())
    spent: dict[int, float] = {}
    for _, user_id, role in rows:
        spent[user_id] = spent.get(user_id, 0.0) + cost_per_image / weight(role)
    args = [repr(float(start)), STATE_TTL_S]
    for user_id, amount in spent.items():
        args += [user_id, repr(amount)]
    client().eval(_CHARGE, 2, pass_key(), vtime_key(), *args)
    return {job_id: role for job_id, _, role in rows}


def observe_waits(claimed: list[int], roles: dict[int, str]) -> None:
    """Wait-time histogram (queued -> first started) per priority (the user's role)."""
    from metrics import definitions as m
    for job_id, created, started, attempts in (gen.GenerationJob.select(
            gen.GenerationJob.id, gen.GenerationJob.created_at, gen.GenerationJob.started_at,
            gen.GenerationJob.attempts).where(gen.GenerationJob.id.in_(claimed)).tuples()):
        if attempts == 1 and created and started:
            m.generation_wait.labels(roles.get(job_id, "user")).observe(max(0.0, (started - created).total_seconds()))


class UserQueueCollector:
    """Prometheus collector: queued and running images of the GENERATION_METRICS_TOP_USERS users with the
    most queued, the rest summed as user="other" (a bounded label set)."""

    def collect(self):
        import settings
        from prometheus_client.core import GaugeMetricFamily
        family = GaugeMetricFamily("atelier_generation_user_jobs", "Queued and running images per user (top N)",
                                   labels=["user", "state"])
        try:
            rows = list(gen.GenerationJob.select(User.username, gen.GenerationJob.state, fn.COUNT(gen.GenerationJob.id))
                        .join(gen.GenerationRun).join(User)
                        .where(gen.GenerationJob.state.in_(("queued", "running")))
                        .group_by(User.username, gen.GenerationJob.state).tuples())
        except Exception:  # database down: /metrics still answers, healthz says why
            rows = []
        counts: dict[str, dict[str, int]] = {}
        for username, state, count in rows:
            counts.setdefault(username, {"queued": 0, "running": 0})[state] = count
        ranked = sorted(counts, key=lambda u: (-counts[u]["queued"], -counts[u]["running"], u))
        top = settings.get().generation_metrics_top_users
        shown = [(u if u != "other" else "@other", counts[u]) for u in ranked[:top]]  # "other" is the rest
        if len(ranked) > top:
            rest = ranked[top:]
            shown.append(("other", {state: sum(counts[u][state] for u in rest) for state in ("queued", "running")}))
        for label, states in shown:
            for state, value in states.items():
                family.add_metric([label, state], value)
        yield family
