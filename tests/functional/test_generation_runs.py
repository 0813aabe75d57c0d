"""Run management over the REST API: cursor paging of runs and of a run's jobs, deleting runs (and the
blobs only they used), the zip download, retrying failed jobs; one user never reaches another's runs."""
from models_db import generation as gen
from tests.helpers import auth

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


def submit(client, key, **body):
    response = client.post("/api/v1/generation", json=body, headers=auth(key))
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def pages(client, key, url, field="items"):
    """Every page of a cursor-paged listing: (list of pages, each a list of items)."""
    out, seen = [], set()
    while url:
        response = client.get(url, headers=auth(key))
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        out.append(body[field])
        cursor = body["metadata"].get("nextCursor")
        assert cursor not in seen
        seen.add(cursor)
        url = body["metadata"]["nextPage"].split("localhost", 1)[-1] if cursor else None
    return out


def test_runs_list_pages_by_cursor_newest_first_and_only_yours(client, alice, bob, sd1):
    made = [submit(client, alice[1], model=sd1["versionId"], prompt=f"p{n}", **SMALL)["id"] for n in range(5)]
    bobs = submit(client, bob[1], model=sd1["versionId"], prompt="bob's", **SMALL)["id"]
    got = pages(client, alice[1], "/api/v1/generation/runs?limit=2")
    assert [len(p) for p in got] == [2, 2, 1]
    assert [r["id"] for p in got for r in p] == made[::-1]  # no duplicates, no gaps
    assert all("jobs" not in r for p in got for r in p)
    first = client.get("/api/v1/generation/runs?limit=5", headers=auth(alice[1])).get_json()
    assert "nextCursor" not in first["metadata"] and first["metadata"]["pageSize"] == 5
    assert [r["id"] for p in pages(client, bob[1], "/api/v1/generation/runs") for r in p] == [bobs]
    bad = client.get("/api/v1/generation/runs?cursor=garbage", headers=auth(alice[1]))
    assert bad.status_code == 400 and bad.get_json()["error"]


def test_a_runs_jobs_page_by_cursor_in_order_with_the_runs_summary(client, alice, bob, sd1):
    run = submit(client, alice[1], model=sd1["versionId"], prompt="many", quantity=7, seed=10, **SMALL)
    assert len(run["jobs"]) == 7  # a small run's first page holds all its jobs
    url = f"/api/v1/generation/runs/{run['id']}?limit=3"
    got = pages(client, alice[1], url, field="jobs")
    assert [len(p) for p in got] == [3, 3, 1]
    assert [j["index"] for p in got for j in p] == list(range(7))
    assert [j["seed"] for p in got for j in p] == list(range(10, 17))
    body = client.get(url, headers=auth(alice[1])).get_json()
    assert (body["id"], body["total"], body["status"]) == (run["id"], 7, "Queued")
    # only the failed ones, still paged
    gen.GenerationJob.update(state="failed", error="boom").where(
        gen.GenerationJob.run == run["id"], gen.GenerationJob.index.in_([1, 4, 5])).execute()
    failed = pages(client, alice[1], f"/api/v1/generation/runs/{run['id']}?limit=2&state=failed", field="jobs")
    assert [[j["index"] for j in p] for p in failed] == [[1, 4], [5]]
    assert {j["error"] for p in failed for j in p} == {"boom"}
    assert client.get(f"/api/v1/generation/runs/{run['id']}?state=odd", headers=auth(alice[1])).status_code == 400
    other = client.get(f"/api/v1/generation/runs/{run['id']}", headers=auth(bob[1]))
    assert other.status_code == 404 and other.get_json()["error"]
