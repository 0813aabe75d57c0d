"""Fair shares of the GPU workers across users, and the per-user limits on what may be queued: a real
Dramatiq worker (or the actor's own function, one message at a time), the real database and Redis."""
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from jobs import generation as jobs
from models_db import generation as gen
from models_db.images import Image
from models_db.quotas import image_cost
from models_db.redis_store import client as redis
from tests.conftest import make_user, run_jobs
from tests.functional.test_generation import SMALL, first_step
from tests.helpers import auth


def submit(client, key, **body):
    response = client.post("/api/v1/generation", json=body, headers=auth(key))
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def batches_before(job: gen.GenerationJob) -> int:
    """How many other batches were claimed while the job waited (between its queueing and its start)."""
    tokens = {token for (token,) in gen.GenerationJob.select(gen.GenerationJob.claimed_by).where(
        gen.GenerationJob.started_at > job.created_at, gen.GenerationJob.started_at < job.started_at,
        gen.GenerationJob.claimed_by != job.claimed_by).tuples()}
    return len(tokens)


def test_one_image_behind_another_users_500_starts_within_a_few_batches(client, sd1, worker):
    _, anna = make_user("anna")
    _, ben = make_user("ben")
    _, cleo = make_user("cleo")
    pubsub = redis().pubsub(ignore_subscribe_messages=True)
    big = submit(client, anna, model=sd1["versionId"], prompt="a crowd", quantity=500, seed=1, **SMALL)
    pubsub.subscribe(jobs.channel(big["id"]))
    assert first_step(pubsub, 120), "the big run never started"
    # ben's image can share anna's batches (same parameters), cleo's needs a batch of its own
    small = [submit(client, ben, model=sd1["versionId"], prompt="one boat", seed=2, **SMALL),
             submit(client, cleo, model=sd1["versionId"], prompt="one kite", seed=3, **dict(SMALL, steps=3))]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if all(gen.GenerationRun.get_by_id(r["id"]).status == "Done" for r in small):
            break
        if gen.GenerationRun.get_by_id(big["id"]).done >= 250:  # long past any fair turn: FIFO
            break
        time.sleep(0.2)
    assert client.post(f"/api/v1/generation/runs/{big['id']}/cancel", headers=auth(anna)).status_code == 200
    run_jobs(worker)
    waited = []
    for run in small:
        job = gen.GenerationJob.get(gen.GenerationJob.run == run["id"])
        assert job.state == "done" and job.started_at is not None, (job.state, gen.GenerationRun.get_by_id(
            big["id"]).done)
        waited.append(batches_before(job))
    big_done = gen.GenerationRun.get_by_id(big["id"]).done
    assert max(waited) <= 3, f"the small images waited behind {waited} batches ({big_done} of the 500 made)"
    assert big_done < 100  # the small ones did not wait for the big run
    # nothing was made twice, nothing left half-done
    assert Image.select().count() == gen.GenerationJob.select().where(gen.GenerationJob.state == "done").count()
    assert not gen.GenerationJob.select().where(gen.GenerationJob.state.in_(("queued", "running"))).exists()


def test_every_image_of_interleaved_users_is_made_exactly_once(client, sd1, worker):
    keys = [make_user(name)[1] for name in ("anna", "ben", "cleo")]
    runs = [submit(client, keys[0], model=sd1["versionId"], prompt="many", quantity=20, seed=1, **SMALL),
            submit(client, keys[1], model=sd1["versionId"], prompt="some", quantity=3, seed=2, **SMALL),
            submit(client, keys[2], model=sd1["versionId"], prompt="other", quantity=2, seed=3,
                   **dict(SMALL, steps=3))]
    run_jobs(worker)
    for run in runs:
        row = gen.GenerationRun.get_by_id(run["id"])
        assert (row.status, row.done) == ("Done", run["total"]), row.status
    finished = list(gen.GenerationJob.select())
    assert all(j.attempts == 1 and j.image_id for j in finished)
    assert Image.select().count() == 25 and len({j.image_id for j in finished}) == 25
    # each message came back once it served another batch, and each was done with once its image existed
    assert all(jobs.run_job(j.id) == "already finished" for j in finished)


def serve(messages: int) -> list[str]:
    """Processes `messages` GPU messages in queue order, each as the actor would (one batch each)."""
    served = []
    for _ in range(messages):
        job = (gen.GenerationJob.select().where(gen.GenerationJob.state == "queued")
               .order_by(gen.GenerationJob.id).first())
        jobs.run_job(job.id)
        token = (gen.GenerationJob.select(gen.GenerationJob.claimed_by)
                 .where(gen.GenerationJob.started_at.is_null(False))
                 .order_by(gen.GenerationJob.started_at.desc()).scalar())
        owners = {j.run.user.username for j in gen.GenerationJob.select().where(gen.GenerationJob.claimed_by == token)}
        served.append("+".join(sorted(owners)))
    return served


def test_roles_weigh_in_the_fair_share(client, sd1, configure):
    """The oldest message always belongs to the user who queued first; the batches still go by weight."""
    configure(GENERATION_ROLE_WEIGHTS="user:1,admin:4")
    _, una = make_user("una")
    _, ada = make_user("ada", role="admin")
    submit(client, una, model=sd1["versionId"], prompt="u", quantity=40, seed=1, **SMALL)
    submit(client, ada, model=sd1["versionId"], prompt="a", quantity=64, seed=2, cfg_scale=5, **SMALL)
    order = serve(8)
    # the same cost per image (another cfg scale: batches of their own), and ada weighs 4: 4 batches to 1
    assert order == ["una", "ada", "ada", "ada", "ada", "una", "ada", "ada"], order


def test_users_with_equal_weights_take_turns_and_share_batches(client, sd1, configure):
    keys = [make_user(name)[1] for name in ("anna", "ben", "cleo")]
    submit(client, keys[0], model=sd1["versionId"], prompt="a", quantity=40, seed=1, **SMALL)
    submit(client, keys[1], model=sd1["versionId"], prompt="b", quantity=40, seed=2, **dict(SMALL, steps=3))
    submit(client, keys[2], model=sd1["versionId"], prompt="c", quantity=2, seed=3, **SMALL)
    order = serve(4)
    # anna's batch has room for cleo's two images (same parameters): they ride along at once
    assert order == ["anna+cleo", "ben", "anna", "ben"], order


# ---- limits ----------------------------------------------------------------------------------------
def refused(client, key, path="/api/v1/generation", **body) -> dict:
    runs, jobs_before = gen.GenerationRun.select().count(), gen.GenerationJob.select().count()
    response = client.post(path, json=body, headers=auth(key))
    answer = response.get_json()
    assert response.status_code == 429, answer
    assert isinstance(answer["retryAfter"], int) and answer["retryAfter"] >= 1, answer
    # Flask-Limiter re-states Retry-After from its own clock on every limited route: a second may go
    assert abs(int(response.headers["Retry-After"]) - answer["retryAfter"]) <= 1
    assert (gen.GenerationRun.select().count(), gen.GenerationJob.select().count()) == (runs, jobs_before)
    return answer


def seconds_to_midnight() -> float:
    now = datetime.now(timezone.utc)
    return (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc) - now).total_seconds()


def test_a_cap_on_open_images_per_user(client, alice, bob, sd1, worker, configure):
    configure(GENERATION_MAX_OPEN_JOBS="5")
    _, key = alice
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=3, **SMALL)
    answer = refused(client, key, model=sd1["versionId"], prompt="x", quantity=3, **SMALL)
    assert "5" in answer["error"] and "queued" in answer["error"], answer
    submit(client, bob[1], model=sd1["versionId"], prompt="x", quantity=5, **SMALL)  # bob has his own cap
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=2, **SMALL)  # up to the cap
    run_jobs(worker)
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=5, **SMALL)  # finished ones are not open


def test_a_daily_image_budget_gives_back_cancelled_and_failed_images(client, alice, sd1, configure):
    configure(GENERATION_DAILY_IMAGES="4")
    _, key = alice
    first = submit(client, key, model=sd1["versionId"], prompt="x", quantity=3, **SMALL)
    answer = refused(client, key, model=sd1["versionId"], prompt="x", quantity=2, **SMALL)
    assert "4 images a day" in answer["error"], answer
    assert abs(answer["retryAfter"] - seconds_to_midnight()) < 5
    quota = client.get("/api/v1/generation/quota", headers=auth(key)).get_json()
    assert quota["usage"]["imagesToday"] == 3 and quota["limits"]["imagesPerDay"] == 4, quota
    assert client.post(f"/api/v1/generation/runs/{first['id']}/cancel", headers=auth(key)).status_code == 200
    second = submit(client, key, model=sd1["versionId"], prompt="x", quantity=4, **SMALL)
    gen.GenerationJob.update(state="failed", error="broken").where(
        gen.GenerationJob.run == second["id"], gen.GenerationJob.index == 0).execute()
    assert client.get("/api/v1/generation/quota", headers=auth(key)).get_json()["usage"]["imagesToday"] == 3
    submit(client, key, model=sd1["versionId"], prompt="x", **SMALL)


def test_cost_counts_pixels_steps_and_the_hires_pass():
    assert image_cost(512, 512, 20) == 1.0
    assert image_cost(1024, 1024, 20) == 4.0
    assert image_cost(512, 512, 40) == 2.0
    assert image_cost(512, 512, 20, hires_scale=2, hires_steps=10) == 1.0 + 4 * 0.5
    assert image_cost(512, 512, 20, hires_scale=2, hires_steps=0) == 5.0  # 0: as many as the first pass
    # 2048² at 150 steps, upscaled ×4 with 150 hires steps: 8192² × 150 on top
    assert image_cost(2048, 2048, 150, hires_scale=4, hires_steps=150) == 16 * 7.5 + 256 * 7.5


def test_a_daily_cost_budget_counts_what_images_really_cost(client, alice, sd1, configure):
    configure(GENERATION_DAILY_COST="10")
    _, key = alice
    big = dict(width=512, height=512, steps=20, sampler="Euler")
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=4, **big)  # 4 units
    answer = refused(client, key, model=sd1["versionId"], prompt="x", quantity=3, hires={"scale": 2, "steps": 10},
                     **big)  # 3 × (1 + 2² × 10/20) = 9 more
    assert "cost" in answer["error"], answer
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=1, hires={"scale": 2, "steps": 10}, **big)
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=100, **SMALL)  # 64² × 2 steps: 0.0016 each
    refused(client, key, model=sd1["versionId"], prompt="x", quantity=3, **big)
    quota = client.get("/api/v1/generation/quota", headers=auth(key)).get_json()
    assert quota["usage"]["costToday"] == pytest.approx(4 + 3 + 100 * image_cost(64, 64, 2))
    assert quota["limits"]["costPerDay"] == 10


def test_the_a1111_entry_and_the_cli_are_limited_too(client, alice, sd1, configure, tmp_path):
    from tests.helpers import cli
    configure(GENERATION_DAILY_IMAGES="2")
    user, key = alice
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=2, **SMALL)
    answer = refused(client, key, "/sdapi/v1/txt2img", prompt="x", steps=2, width=64, height=64, batch_size=1)
    assert "2 images a day" in answer["error"]
    result = cli("generate", "--user", user.username, "--model", sd1["versionId"], "--prompt", "one more",
                 "--steps", "2", "--width", "64", "--height", "64", "--no-wait")
    assert result.exit_code != 0 and "2 images a day" in result.output, result.output
    assert gen.GenerationRun.select().count() == 1


def test_exempt_roles_and_other_users_are_not_held_back(client, alice, sd1, configure):
    configure(GENERATION_DAILY_IMAGES="2", GENERATION_QUOTA_EXEMPT_ROLES="admin")
    _, admin = make_user("root", role="admin")
    submit(client, admin, model=sd1["versionId"], prompt="x", quantity=5, **SMALL)
    quota = client.get("/api/v1/generation/quota", headers=auth(admin)).get_json()
    assert quota["exempt"] is True and quota["limits"]["imagesPerDay"] is None, quota
    submit(client, alice[1], model=sd1["versionId"], prompt="x", quantity=2, **SMALL)


def test_the_account_page_shows_limits_and_todays_use(client, alice, sd1, configure):
    from tests.functional.test_web_pages import log_in
    configure(GENERATION_DAILY_IMAGES="50", GENERATION_MAX_OPEN_JOBS="20")
    user, key = alice
    submit(client, key, model=sd1["versionId"], prompt="x", quantity=3, **SMALL)
    log_in(client, user)
    html = client.get("/account").get_data(as_text=True)
    block = html[html.index('id="generation-quota"'):]
    block = block[:block.index("</div>")]
    assert "3 of 50" in block and "3 of 20" in block, block


def test_prometheus_names_the_top_users_and_sums_the_rest(client, sd1, configure):
    configure(GENERATION_METRICS_TOP_USERS="2")
    for name, count in (("anna", 5), ("ben", 3), ("cleo", 2), ("dora", 1)):
        submit(client, make_user(name)[1], model=sd1["versionId"], prompt="x", quantity=count, **SMALL)
    text = client.get("/metrics").get_data(as_text=True)
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith("atelier_generation_user_jobs{")}
    queued = {k: v for k, v in lines.items() if 'state="queued"' in k}
    assert queued == {'atelier_generation_user_jobs{state="queued",user="anna"}': 5.0,
                      'atelier_generation_user_jobs{state="queued",user="ben"}': 3.0,
                      'atelier_generation_user_jobs{state="queued",user="other"}': 3.0}, lines
    serve(1)
    text = client.get("/metrics").get_data(as_text=True)
    waits = re.search(r'^atelier_generation_wait_seconds_count\{priority="user"\} (\S+)$', text, re.M)
    assert waits and float(waits.group(1)) >= 8, text  # the batch: 3 of anna's, 2 of ben's and cleo's, dora's
