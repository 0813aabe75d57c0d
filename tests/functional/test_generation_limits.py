"""Generation requests are bounded before anything is expanded or stored: grid ranges, brace nesting,
prompt lengths and counts, and what one run may write to the database."""
import random
import string
import tracemalloc

from models_db import generation as gen
from models_db.db import db
from tests.helpers import auth, catalog_model

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


def refused(client, key, field, **body) -> dict:
    response = client.post("/api/v1/generation", json=body, headers=auth(key))
    answer = response.get_json()
    assert response.status_code == 400, (response.status_code, str(answer)[:500])
    assert answer.get("field") == field, answer
    assert gen.GenerationRun.select().count() == 0 and gen.GenerationJob.select().count() == 0
    return answer


def database_bytes() -> int:
    """What the database takes on disk (SQLite: its pages; PostgreSQL: the generation tables)."""
    from peewee import SqliteDatabase
    if isinstance(db.obj, SqliteDatabase):
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        pragma = lambda name: db.execute_sql(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
        return (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
    tables = [t._meta.table_name for t in gen.TABLES]
    return int(db.execute_sql("SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                              "WHERE c.relname = ANY(%s)", (tables,)).fetchone()[0])


def noise(n: int, seed: int) -> str:
    """Text that does not compress (PostgreSQL would squeeze a repeated letter into nothing)."""
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + " ") for _ in range(n))


def test_a_huge_grid_range_is_refused_before_it_is_expanded(client, alice, sd1):
    _, key = alice
    for values in ("1-3000000", "1-4000000000 (+1)", "1-10 [3000000000]", "0.5-1000000.5", "1, 2, 3-2000"):
        tracemalloc.start()
        try:
            answer = refused(client, key, "grid", model=sd1["versionId"], prompt="x", **SMALL,
                             grid={"x": {"field": "seed", "values": values}})
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert "1000" in answer["error"], answer
        assert peak < 20 << 20, f"{values}: {peak >> 20} MB allocated to refuse it"


def test_grid_axis_values_are_bounded_in_count_and_length(client, alice, sd1):
    _, key = alice
    refused(client, key, "grid.x.values", model=sd1["versionId"], prompt="x", **SMALL,
            grid={"x": {"field": "seed", "values": list(range(20000))}})
    refused(client, key, "grid.x.values", model=sd1["versionId"], prompt="x", **SMALL,
            grid={"x": {"field": "prompt_sr", "values": "x," + "y" * 200_000}})


def test_deeply_nested_braces_are_a_clear_400(client, alice, sd1):
    _, key = alice
    for depth in (50, 3000):
        answer = refused(client, key, "prompt", model=sd1["versionId"], prompt="{" * depth + "a" + "}" * depth, **SMALL)
        assert "nest" in answer["error"], answer
    answer = refused(client, key, "prompts", model=sd1["versionId"], prompts=["ok", "{" * 3000 + "}" * 3000], **SMALL)
    assert "nest" in answer["error"], answer
    # a few levels are fine
    response = client.post("/api/v1/generation", headers=auth(key), json=dict(
        model=sd1["versionId"], prompt="a {b|{c|{d|e}}}", **SMALL))
    assert response.status_code == 202, response.get_json()


def test_prompts_entries_have_the_prompt_length_limit(client, alice, sd1):
    _, key = alice
    refused(client, key, "prompts.1", model=sd1["versionId"], prompts=["fine", "x" * 10_001], **SMALL)


def test_total_expansion_is_bounded_before_anything_is_stored(client, alice, sd1):
    _, key = alice
    model = sd1["versionId"]
    # 10 prompts of 9 KB, 1000 of each: 90 MB of prompts from a 90 KB request
    answer = refused(client, key, "prompts", model=model, prompts=[noise(9000, i) for i in range(10)],
                     quantity=1000, **SMALL)
    assert "characters" in answer["error"], answer
    # one 10 KB negative prompt repeated by quantity x grid cells
    refused(client, key, "prompt", model=model, prompt="x", negative_prompt=noise(10_000, 1), quantity=1000,
            **SMALL, grid={"x": {"field": "seed", "values": "1-10"}})
    # combinatorial templates and wildcards count what they expand to, not what was written
    refused(client, key, "prompt", model=model, combinatorial=True, quantity=1, **SMALL,
            prompt=noise(5000, 2) + " {" + "|".join(str(i) for i in range(2000)) + "}")


def test_a_large_run_stores_its_shared_parameters_once(client, alice, sd1):
    user, key = alice
    loras = [catalog_model(user, f"style {i}", model_type="LORA") for i in range(20)]
    resources = [{"id": m.versions.get().id, "weight": 0.5} for m in loras]
    before = database_bytes()
    body = dict(model=sd1["versionId"], prompt="a small house by the sea", negative_prompt="blurry, low quality",
                quantity=1000, resources=resources, **SMALL, grid={"x": {"field": "seed", "values": "1-10"}})
    response = client.post("/api/v1/generation", json=body, headers=auth(key))
    assert response.status_code == 202, response.get_json()
    assert gen.GenerationJob.select().count() == 10_000
    grown = database_bytes() - before
    assert grown < 8 << 20, f"a 2 KB request grew the database by {grown >> 20} MB"
    job = gen.GenerationJob.select().first()
    assert len(job.params["loras"]) == 20 and job.params["model"]["version_id"] == sd1["versionId"]
