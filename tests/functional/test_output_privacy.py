"""Generated outputs are private to the run's owner (and staff) until the owner posts them: through the real
app, a real worker generating with the tiny SD1 checkpoint, on another creator's public model."""
import re

import pytest

from jobs.search import flush_search_index
from models_db import images as im
from tests.conftest import make_user, run_jobs
from tests.functional.test_web_pages import log_in
from tests.helpers import auth, import_model

SMALL = {"width": 64, "height": 64, "steps": 2, "sampler": "Euler"}


@pytest.fixture
def bobs_checkpoint(sd1_file, bob):
    return import_model(sd1_file, "--publish", "--owner", "bob", "--name", "Bob Tiny")


@pytest.fixture
def bobs_lora(tmp_path, bob):
    from gpu.demo import write_lora
    path = write_lora(tmp_path / "ink.safetensors", "SD1")
    return import_model(path, "--publish", "--owner", "bob", "--type", "LORA", "--base-model", "SD 1.5")


def generate(client, key, worker, model: dict, **body) -> list[int]:
    """Queues a run, lets the worker make it, returns its image ids."""
    r = client.post("/api/v1/generation", headers=auth(key),
                    json={"model": model["versionId"], "prompt": "a quiet harbour", "seed": 3, **SMALL, **body})
    assert r.status_code == 202, r.get_json()
    run_jobs(worker)
    run = client.get(f"/api/v1/generation/runs/{r.get_json()['id']}", headers=auth(key)).get_json()
    assert run["status"] == "Done", run
    return [j["imageId"] for j in run["jobs"]]


def listed_ids(client, headers=None, **query) -> set[int]:
    r = client.get("/api/v1/images", query_string={"nsfw": "X", **query}, headers=headers or {})
    assert r.status_code == 200, r.get_json()
    return {i["id"] for i in r.get_json()["items"]}


def files(image_id: int) -> list[str]:
    """The original (64 px) and a resized variant (asked for 32 px, the 96 px one served)."""
    return [f"/images/{image_id}/width=64/{image_id}.png", f"/images/{image_id}/width=32/{image_id}.jpeg"]


def model_level(client, model: dict) -> tuple[int, int]:
    m = client.get(f"/api/v1/models/{model['modelId']}?nsfw=X").get_json()
    return m["nsfwLevel"], m["modelVersions"][0]["nsfwLevel"]


def viewer(app, account=None):
    """A browser of its own (signed in as the account's user, if any) and the account's API key headers."""
    browser = app.test_client()
    if account is None:
        return browser, {}
    log_in(browser, account[0])
    return browser, auth(account[1])


def searched(client) -> tuple[int, int, list]:
    """Search for bob's model: its id, level and showcase images as the index has them."""
    found = client.get("/api/v1/search?q=Bob%20Tiny").get_json()["items"][0]
    return found["id"], found["nsfwLevel"], found["modelVersions"][0]["images"]


def assert_hidden(client, headers: dict, image_id: int, model: dict, username: str = "alice") -> None:
    """Nothing of this image reaches this viewer (client signed in as them, headers with their key): listings
    under every filter, the image, its page and files, the model's pages."""
    for query in ({}, {"modelVersionId": model["versionId"]}, {"modelId": model["modelId"]},
                  {"username": username}, {"sort": "Most Reactions"}):
        assert image_id not in listed_ids(client, headers, **query), query
    r = client.get(f"/api/v1/images/{image_id}", headers=headers)
    assert r.status_code == 404 and r.get_json()["error"]
    assert client.get(f"/images/{image_id}").status_code == 404
    for url in files(image_id):
        assert client.get(url, headers=headers).status_code == 404, url
        assert client.get(url).status_code == 404, url
    page = client.get(f"/models/{model['modelId']}").get_data(as_text=True)
    assert f"/images/{image_id}" not in page
    assert f"/images/{image_id}/" not in client.get(f"/user/{username}").get_data(as_text=True)
    shown = client.get(f"/api/v1/model-versions/{model['versionId']}?nsfw=X", headers=headers).get_json()
    assert all(f"/images/{image_id}/" not in i["url"] for i in shown["images"])


def assert_shown(client, headers: dict, image_id: int) -> dict:
    r = client.get(f"/api/v1/images/{image_id}", headers=headers)
    assert r.status_code == 200, r.get_json()
    assert client.get(f"/images/{image_id}").status_code == 200
    for url in files(image_id):
        assert client.get(url, headers=headers).status_code == 200, url
    return r.get_json()


def test_outputs_stay_private_until_their_owner_posts_them(app, client, alice, bobs_checkpoint, bobs_lora, worker):
    _, key = alice
    carol, staff = make_user("carol"), make_user("mod", role="moderator")
    carol_key, staff_key = carol[1], staff[1]
    anonymous, as_carol, as_alice, as_staff = (viewer(app, a) for a in (None, carol, alice, staff))
    levels = model_level(client, bobs_checkpoint)
    flush_search_index.fn()
    kept, posted = generate(client, key, worker, bobs_checkpoint, quantity=2,
                            resources=[{"id": bobs_lora["versionId"], "weight": 0.5}])
    assert im.Image.get_by_id(kept).nsfw_level > 0  # the detector still scores private outputs
    # anyone but alice and staff: nothing, as if they did not exist
    for browser, headers in (anonymous, as_carol):
        for image_id in (kept, posted):
            assert_hidden(browser, headers, image_id, bobs_checkpoint)
    assert model_level(client, bobs_checkpoint) == levels
    for verb in ("put", "delete"):
        assert getattr(client, verb)(f"/api/v1/images/{kept}/reactions/Like", headers=auth(carol_key)).status_code \
            == 404
    assert client.post(f"/api/v1/images/{kept}/report", headers=auth(carol_key),
                       json={"reason": "spam"}).status_code == 404
    assert searched(client) == (bobs_checkpoint["modelId"], levels[0], [])
    assert "a quiet harbour" not in as_carol[0].get(f"/generate?remix={kept}").get_data(as_text=True)
    assert "a quiet harbour" in as_alice[0].get(f"/generate?remix={kept}").get_data(as_text=True)
    # even when the detector is unsure, the rating game and the moderators' queue only see posted images
    im.Image.update(needs_review=True).where(im.Image.id.in_([kept, posted])).execute()
    assert client.get("/api/v1/rating-game/next", headers=auth(carol_key)).get_json()["item"] is None
    assert client.post(f"/api/v1/rating-game/{kept}", headers=auth(carol_key), json={"level": "R"}).status_code == 404
    assert client.get("/api/v1/moderation/queue", headers=auth(staff_key)).get_json()["items"] == []
    # alice sees her own outputs (listed for her alone), and staff can open them
    assert {kept, posted} <= listed_ids(client, auth(key), username="alice")
    assert {kept, posted}.isdisjoint(listed_ids(client, auth(staff_key)))
    for browser, headers in (as_alice, as_staff):
        assert_shown(browser, headers, kept)
    r = as_alice[0].get(files(kept)[0])
    assert "private" in r.headers["Cache-Control"] and "public" not in r.headers["Cache-Control"]
    # carol cannot post alice's image; a list with one bad id posts nothing
    r = client.post("/api/v1/posts", headers=auth(carol_key), json={"imageIds": [kept]})
    assert r.status_code == 404 and r.get_json()["error"]
    r = client.post("/api/v1/posts", headers=auth(key), json={"imageIds": [posted, 987654321]})
    assert r.status_code == 404 and r.get_json()["error"]
    assert im.Post.select().count() == 0 and im.Image.get_by_id(posted).private
    for bad in ([], list(range(1, 102)), ["x"]):
        r = client.post("/api/v1/posts", headers=auth(key), json={"imageIds": bad})
        assert r.status_code == 400 and r.get_json()["error"], bad
    # alice posts one of the two
    r = client.post("/api/v1/posts", headers=auth(key), json={"imageIds": [posted], "title": "Harbour"})
    assert r.status_code == 201, r.get_json()
    post = r.get_json()
    assert post["imageIds"] == [posted] and post["title"] == "Harbour"
    shown = assert_shown(*anonymous, posted)
    assert shown["postId"] == post["id"] and shown["username"] == "alice"
    resources = {bobs_checkpoint["versionId"], bobs_lora["versionId"]}
    assert set(shown["modelVersionIds"]) == resources
    for query in ({"modelVersionId": bobs_checkpoint["versionId"]}, {"modelId": bobs_checkpoint["modelId"]},
                  {"username": "alice"}, {"postId": post["id"]}):
        assert listed_ids(client, **query) & {kept, posted} == {posted}, query
    item = client.get(f"/api/v1/images?postId={post['id']}&nsfw=X").get_json()["items"][0]
    assert set(item["modelVersionIds"]) == resources and item["meta"]["prompt"].startswith("a quiet harbour")
    page = client.get(f"/images/{posted}").get_data(as_text=True)
    assert "Resources used" in page and "Bob Tiny" in page and "ink" in page
    assert f"/images/{posted}/" in client.get("/user/alice").get_data(as_text=True)
    assert_hidden(*as_carol, kept, bobs_checkpoint)
    # a community image of bob's model: neither its showcase nor its level
    assert model_level(client, bobs_checkpoint) == levels
    run_jobs(worker)
    assert searched(client) == (bobs_checkpoint["modelId"], levels[0], [])
    assert f"/images/{posted}/" not in client.get(f"/models/{bobs_checkpoint['modelId']}").get_data(as_text=True)
    r = client.post("/api/v1/posts", headers=auth(key), json={"imageIds": [posted]})
    assert r.status_code == 409 and r.get_json()["error"]
    assert client.put(f"/api/v1/images/{posted}/reactions/Like", headers=auth(carol_key)).status_code == 200


def test_the_owner_posts_from_the_image_page(client, alice, bobs_checkpoint, worker):
    user, key = alice
    (image_id,) = generate(client, key, worker, bobs_checkpoint)
    log_in(client, user)
    html = client.get(f"/images/{image_id}").get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"[^>]*id="post-image"', html).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert client.post(action).status_code == 400  # no CSRF token
    assert im.Image.get_by_id(image_id).private
    assert client.post(action, data={"csrf_token": token}).status_code == 302
    image = im.Image.get_by_id(image_id)
    assert not image.private and image.post_id is not None
    assert 'id="post-image"' not in client.get(f"/images/{image_id}").get_data(as_text=True)


def test_a_public_default_posts_finished_outputs(app, client, alice, bobs_checkpoint, worker):
    user, key = alice
    assert client.get("/api/v1/me", headers=auth(key)).get_json()["postOutputs"] is False
    browser, _ = viewer(app, alice)
    html = browser.get("/account").get_data(as_text=True)
    assert 'name="new_outputs"' in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = browser.post("/account", data={"csrf_token": token, "browsing_level": "Soft", "email": "",
                                       "new_outputs": "public"})
    assert r.status_code == 302
    assert '<option selected value="public">' in browser.get("/account").get_data(as_text=True)
    assert client.get("/api/v1/me", headers=auth(key)).get_json()["postOutputs"] is True
    ids = generate(client, key, worker, bobs_checkpoint, quantity=2)
    assert listed_ids(client, modelVersionId=bobs_checkpoint["versionId"]) == set(ids)
    posts = {client.get(f"/api/v1/images/{i}").get_json()["postId"] for i in ids}
    assert len(posts) == 1 and None not in posts  # one post for the run
    # back to private through the API: the next run's outputs stay hidden
    r = client.put("/api/v1/me/settings", headers=auth(key), json={"postOutputs": False})
    assert r.status_code == 200 and r.get_json() == {"browsingLevel": "Soft", "browsingMask": 3, "postOutputs": False}
    assert client.put("/api/v1/me/settings", headers=auth(key), json={"postOutputs": "maybe"}).status_code == 400
    (later,) = generate(client, key, worker, bobs_checkpoint, seed=9)
    assert client.get(f"/api/v1/images/{later}").status_code == 404
    # upgrading an install whose outputs were public: those in no post become private, posted ones stay
    import importlib

    from models_db.db import db
    im.Image.update(private=False).execute()
    importlib.import_module("models_db.migrations.0019_private_outputs").up(db)
    assert client.get(f"/api/v1/images/{later}").status_code == 404
    assert listed_ids(client, modelVersionId=bobs_checkpoint["versionId"]) == set(ids)
