"""Images through the real parts: upload → process actor → NudeNet actor → /api/v1/images."""
import io
import json

import pytest

from models_db import images as im
from models_db.storage import get_store
from tests import factories
from tests.conftest import make_user, run_jobs
from tests.helpers import auth, cli, import_model


def upload(client, key, path, **form):
    with open(path, "rb") as f:
        return client.post("/api/v1/images", headers=auth(key), content_type="multipart/form-data",
                           data={"file": (io.BytesIO(f.read()), path.name), **form})


def ready_image(client, worker, key, path, **form):
    sent = upload(client, key, path, **form)
    assert sent.status_code == 202, sent.get_json()
    run_jobs(worker)
    return im.Image.get_by_id(sent.get_json()["id"])


def blob_count() -> int:
    root = get_store().root
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_upload_parses_metadata_links_resources_and_scores(client, worker, alice, tmp_path):
    model = import_model(factories.safetensors_file(tmp_path / "m.safetensors", "SD1"), "--publish", "--owner", "alice")
    autov2 = model["hashes"]["AutoV2"].lower()
    path = factories.png_with_parameters(tmp_path / "lighthouse.png", factories.A1111_TEXT.format(model_hash=autov2))
    image = ready_image(client, worker, alice[1], path, modelVersionId=str(model["versionId"]))
    assert image.status == "Ready" and (image.width, image.height) == (64, 48)
    assert image.nsfw_level == im.PG and image.nsfw_source == "detector"  # the real detector ran
    assert image.blurhash and len(image.phash) == 16
    meta = image.meta
    assert meta["prompt"] == "a lighthouse at dusk, dramatic sky" and meta["seed"] == 1234
    assert [r.version_id for r in image.resources] == [model["versionId"]]
    body = client.get("/api/v1/images").get_json()
    item = body["items"][0]
    assert {"id", "url", "hash", "width", "height", "nsfwLevel", "nsfw", "browsingLevel", "createdAt", "postId",
            "stats", "meta", "username", "baseModel", "modelVersionIds"} <= set(item)
    assert item["nsfwLevel"] == "None" and item["username"] == "alice" and item["baseModel"] == "SD 1.5"
    assert item["modelVersionIds"] == [model["versionId"]] and item["meta"]["negativePrompt"] == "blurry, lowres"
    original = client.get(item["url"].replace("http://localhost", ""))
    assert original.status_code == 200 and original.data[:8] == b"\x89PNG\r\n\x1a\n"
    small = client.get(f"/images/{image.id}/width=32/x.jpeg")
    assert small.status_code == 200 and small.mimetype == "image/jpeg"
    version = client.get(f"/api/v1/model-versions/{model['versionId']}").get_json()
    assert version["images"][0]["hash"] == image.blurhash and version["images"][0]["hasMeta"] is True
    assert version["nsfwLevel"] == im.PG


def test_comfyui_metadata_round_trip(client, worker, alice, tmp_path):
    graph = {"1": {"class_type": "KSampler", "inputs": {"seed": 9, "steps": 12, "cfg": 5, "sampler_name": "euler",
                                                        "positive": ["2", 0], "negative": ["3", 0]}},
             "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox"}},
             "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "text"}}}
    path = factories.png_with_comfy(tmp_path / "comfy.png", graph, {"nodes": [1, 2, 3]})
    image = ready_image(client, worker, alice[1], path)
    assert image.meta["prompt"] == "a fox" and image.meta["workflow"] == {"nodes": [1, 2, 3]}
    with get_store().open(image.blob) as stored:
        from PIL import Image
        kept = Image.open(io.BytesIO(stored.read())).info
    assert json.loads(kept["prompt"]) == graph  # the stored file still carries its chunks


def test_location_is_stripped(client, worker, alice, tmp_path):
    from PIL import Image
    path = factories.jpeg_with_gps(tmp_path / "gps.jpg")
    assert 0x8825 in Image.open(path).getexif()
    image = ready_image(client, worker, alice[1], path)
    with get_store().open(image.blob) as stored:
        exif = Image.open(io.BytesIO(stored.read())).getexif()
    assert 0x8825 not in exif and exif.get(0x010F) == "TestCam"


def test_bad_images_are_refused_and_nothing_is_stored(client, worker, alice, tmp_path):
    bomb = upload(client, alice[1], factories.decompression_bomb(tmp_path / "bomb.png"))
    assert bomb.status_code == 400 and "too large" in bomb.get_json()["error"]
    fake = tmp_path / "fake.png"
    fake.write_text("<html>not an image</html>")
    refused = upload(client, alice[1], fake)
    assert refused.status_code == 400 and "not an image" in refused.get_json()["error"]
    assert im.Image.select().count() == 0
    whole = io.BytesIO()
    factories.picture(200, 200).save(whole, "JPEG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(whole.getvalue()[:-400])
    sent = upload(client, alice[1], truncated)
    assert sent.status_code == 202
    run_jobs(worker)
    status = client.get(f"/api/v1/images/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert status["status"] == "Rejected" and "not a readable image" in status["error"]
    assert blob_count() == 0
    assert client.get("/api/v1/images").get_json()["items"] == []
    assert client.get(f"/api/v1/images/{sent.get_json()['id']}").status_code == 404  # not the owner


def set_levels(images_and_levels):
    for image, level in images_and_levels:
        im.Image.update(nsfw_level=level, nsfw_source="moderator").where(im.Image.id == image.id).execute()


def aged(users, days=30):
    from datetime import timedelta

    from models_db.accounts import User
    from models_db.db import utcnow
    User.update(created_at=utcnow() - timedelta(days=days)).where(User.id.in_([u.id for u in users])).execute()


def test_browsing_levels_hold_in_every_listing(client, worker, alice, bob, tmp_path):
    model = import_model(factories.safetensors_file(tmp_path / "m.safetensors", "SD1"), "--publish", "--owner", "alice")
    made = [ready_image(client, worker, alice[1], factories.png_with_parameters(
        tmp_path / f"{i}.png", "p", seed=i), modelVersionId=str(model["versionId"])) for i in range(4)]
    set_levels(zip(made, (im.PG, im.PG13, im.R, im.XXX)))
    im.refresh_version_levels([model["versionId"]])
    levels = lambda url, **kw: sorted(i["browsingLevel"]  # noqa: E731
                                      for i in client.get(url, **kw).get_json()["items"])
    assert levels("/api/v1/images") == [1, 2]  # anonymous: PG and PG13
    assert levels("/api/v1/images?nsfw=None") == [1]
    assert levels("/api/v1/images?nsfw=Mature") == [1, 2, 4]
    assert levels("/api/v1/images?nsfw=X") == [1, 2, 4, 16]
    assert levels("/api/v1/images?nsfw=true") == [1, 2, 4, 16]
    assert client.put("/api/v1/me/settings", headers=auth(bob[1]), json={"browsingLevel": "Mature"}).status_code == 200
    assert levels("/api/v1/images", headers=auth(bob[1])) == [1, 2, 4]
    version = client.get(f"/api/v1/model-versions/{model['versionId']}").get_json()
    assert sorted(i["nsfwLevel"] for i in version["images"]) == [1, 2]
    assert version["nsfwLevel"] == 1 | 2 | 4 | 16
    listed = client.get("/api/v1/models").get_json()["items"][0]
    assert listed["nsfw"] is True and listed["nsfwLevel"] == 23
    assert sorted(i["nsfwLevel"] for i in listed["modelVersions"][0]["images"]) == [1, 2]


def test_reactions_reports_and_moderation(client, worker, alice, bob, tmp_path):
    mod_user, mod_key = make_user("mona", role="moderator")
    first = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "a.png", "p", seed=1))
    second = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "b.png", "p", seed=2))
    for key in (alice[1], bob[1]):
        assert client.put(f"/api/v1/images/{second.id}/reactions/Heart", headers=auth(key)).status_code == 200
    again = client.put(f"/api/v1/images/{second.id}/reactions/Heart", headers=auth(bob[1])).get_json()
    assert again["heartCount"] == 2  # one per user per kind
    undone = client.delete(f"/api/v1/images/{second.id}/reactions/Heart", headers=auth(bob[1])).get_json()
    assert undone["heartCount"] == 1
    assert client.put(f"/api/v1/images/{second.id}/reactions/Wow", headers=auth(bob[1])).status_code == 400
    order = [i["id"] for i in client.get("/api/v1/images?sort=Most Reactions").get_json()["items"]]
    assert order == [second.id, first.id]
    report = client.post(f"/api/v1/images/{first.id}/report", headers=auth(bob[1]), json={"reason": "spam"})
    assert report.status_code == 202
    assert client.get("/api/v1/moderation/queue", headers=auth(bob[1])).status_code == 403
    queue = client.get("/api/v1/moderation/queue", headers=auth(mod_key)).get_json()["items"]
    assert [q["id"] for q in queue] == [first.id] and queue[0]["reports"] == ["spam"]
    removed = client.post(f"/api/v1/moderation/images/{first.id}", headers=auth(mod_key), json={"action": "remove"})
    assert removed.status_code == 200
    assert [i["id"] for i in client.get("/api/v1/images?nsfw=X").get_json()["items"]] == [second.id]
    assert client.get(f"/images/{first.id}/width=64/a.png").status_code == 404
    assert client.get("/api/v1/moderation/queue", headers=auth(mod_key)).get_json()["items"] == []


def test_community_rating_settles_levels_and_weights_follow_moderators(client, worker, alice, tmp_path):
    mod_user, mod_key = make_user("mona", role="moderator")
    raters = [make_user(f"rater{i}") for i in range(4)]
    aged([u for u, _ in raters])  # raters with a record: old accounts, moderators confirmed 3 of their votes
    for user, _ in raters[:3]:
        im.Rater.create(user=user, votes=3, agreed=3)
    images = [ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / f"{i}.png", "p", seed=i))
              for i in range(2)]
    im.Image.update(needs_review=True).execute()
    # image 0: a moderator decides R; raters 0 and 1 said R, rater 2 said PG
    for (_, key), level in zip(raters[:3], ("R", "R", "PG")):
        assert client.post(f"/api/v1/rating-game/{images[0].id}", headers=auth(key),
                           json={"level": level}).status_code == 200
    client.post(f"/api/v1/moderation/images/{images[0].id}", headers=auth(mod_key),
                json={"action": "set-level", "level": "R"})
    weights = {r.user.username: r.weight for r in im.Rater.select()}
    assert weights["rater0"] == pytest.approx(1.1) and weights["rater2"] == pytest.approx(0.8)
    # image 1: weighted votes settle it without a moderator once they reach the threshold
    nxt = client.get("/api/v1/rating-game/next", headers=auth(raters[0][1])).get_json()["item"]
    assert nxt["id"] == images[1].id
    results = [client.post(f"/api/v1/rating-game/{images[1].id}", headers=auth(key), json={"level": "PG13"}).get_json()
               for _, key in raters[:3]]
    assert [r["settled"] for r in results] == [False, False, True]  # 1.1 + 1.1 + 0.8 = 3.0
    settled = im.Image.get_by_id(images[1].id)
    assert (settled.nsfw_level, settled.nsfw_source, settled.needs_review) == (im.PG13, "community", False)
    board = client.get("/api/v1/rating-game/leaderboard").get_json()["items"]
    assert [b["username"] for b in board][:2] == ["rater0", "rater1"] and board[-1]["username"] == "rater2"
    assert client.post(f"/api/v1/rating-game/{images[1].id}", headers=auth(raters[3][1]),
                       json={"level": "PG"}).status_code == 404  # settled: no longer in the game


def test_posts_near_duplicates_and_cli(client, worker, alice, tmp_path):
    post = client.post("/api/v1/posts", headers=auth(alice[1]), json={"title": "My set"}).get_json()
    first = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "a.png", "p", seed=5),
                        postId=str(post["id"]))
    folder = tmp_path / "batch"
    folder.mkdir()
    factories.picture(seed=5).save(folder / "same.jpg", "JPEG", quality=70)  # the same picture, recompressed
    factories.picture(seed=9).save(folder / "other.webp", "WEBP")
    (folder / "notes.txt").write_text("ignored")
    result = cli("import-images", folder, "--user", "alice", "--post-title", "Imported")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["file"] for line in lines) == ["other.webp", "same.jpg"]
    assert all(line["nsfwLevel"] == im.PG for line in lines)
    same = im.Image.get(im.Image.filename == "same.jpg")
    assert first.id in im.near_duplicates(same)
    assert im.Image.get(im.Image.filename == "other.webp").id not in im.near_duplicates(same)
    listed = client.get(f"/api/v1/images?postId={post['id']}").get_json()["items"]
    assert [i["id"] for i in listed] == [first.id] and listed[0]["postId"] == post["id"]


def test_unscored_images_are_swept(client, worker, alice, tmp_path):
    from jobs.images import score_unscored_images
    image = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "a.png", "p"))
    im.Image.update(nsfw_level=0, nsfw_source=None).where(im.Image.id == image.id).execute()
    assert client.get("/api/v1/images").get_json()["items"] == []  # unscored images are not listed
    assert score_unscored_images.fn.__wrapped__() == 1
    assert [i["id"] for i in client.get("/api/v1/images").get_json()["items"]] == [image.id]


def test_only_owner_or_staff_add_showcase_images_others_add_community_images(client, worker, alice, bob, tmp_path):
    from models_db import catalog as c
    from models_db.db import transaction
    from tests.helpers import catalog_model
    model = catalog_model(alice[0], "Lighthouse")
    version = model.versions.get()
    with transaction():
        draft = c.create_version(model, name="v2 (draft)", base_model="SD 1.5")
    missing = client.post("/api/v1/posts", headers=auth(bob[1]), json={"modelVersionId": 987654})
    hidden = client.post("/api/v1/posts", headers=auth(bob[1]), json={"modelVersionId": draft.id})
    assert (missing.status_code, hidden.status_code) == (404, 404)  # a draft of someone else is not there
    assert hidden.get_json() == {"error": f"No model version with id {draft.id}"}
    body = factories.png_bytes("p", seed=3)
    sent = client.post("/api/v1/images", headers=auth(bob[1]), content_type="multipart/form-data",
                       data={"file": (io.BytesIO(body), "a.png"), "modelVersionId": str(draft.id)})
    assert sent.status_code == 404 and sent.get_json() == {"error": f"No model version with id {draft.id}"}
    # bob's images of alice's published version, in a post of it or straight: community images
    post = client.post("/api/v1/posts", headers=auth(bob[1]), json={"modelVersionId": version.id})
    assert post.status_code == 201
    sent = [client.post("/api/v1/images", headers=auth(bob[1]), content_type="multipart/form-data",
                        data={"file": (io.BytesIO(factories.png_bytes("p", seed=seed)), "b.png"), **form})
            for seed, form in ((4, {"postId": str(post.get_json()["id"])}), (5, {"modelVersionId": str(version.id)}))]
    assert [s.status_code for s in sent] == [202, 202], [s.get_json() for s in sent]
    mine = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "6.png", "p", seed=6),
                       modelVersionId=str(version.id))
    mod_user, mod_key = make_user("mona", role="moderator")
    staff = ready_image(client, worker, mod_key, factories.png_with_parameters(tmp_path / "7.png", "p", seed=7),
                        modelVersionId=str(version.id))
    run_jobs(worker)
    community = [s.get_json()["id"] for s in sent]
    for image_id in community:  # bob's pictures are rated X: they must not make alice's model X
        assert client.post(f"/api/v1/moderation/images/{image_id}", headers=auth(mod_key),
                           json={"action": "set-level", "level": "X"}).status_code == 200
    assert client.put("/api/v1/me/settings", headers=auth(bob[1]), json={"browsingLevel": "X"}).status_code == 200
    shown = client.get(f"/api/v1/model-versions/{version.id}", headers=auth(bob[1])).get_json()
    assert sorted(i["id"] for i in shown["images"]) == sorted([mine.id, staff.id])
    assert shown["nsfwLevel"] == im.PG
    got = client.get(f"/api/v1/models/{model.id}", headers=auth(bob[1])).get_json()
    assert (got["nsfw"], got["nsfwLevel"]) == (False, im.PG)
    assert sorted(i["id"] for i in got["modelVersions"][0]["images"]) == sorted([mine.id, staff.id])
    # the model's images as Civitai lists them (by version or model) include the community's
    for query in (f"modelVersionId={version.id}", f"modelId={model.id}"):
        listed = client.get(f"/api/v1/images?nsfw=X&{query}").get_json()["items"]
        assert sorted(i["id"] for i in listed) == sorted([mine.id, staff.id, *community])


def test_the_creators_own_nsfw_flag_outlives_the_showcase_levels(client, worker, alice, tmp_path):
    from tests.helpers import catalog_model
    model = catalog_model(alice[0], "Pin-up", nsfw=True)  # the creator says: mature
    version = model.versions.get()
    image = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "a.png", "p"),
                        modelVersionId=str(version.id))
    assert image.nsfw_level == im.PG  # the detector saw nothing
    got = client.get(f"/api/v1/models/{model.id}").get_json()
    assert got["nsfw"] is True and got["nsfwLevel"] == im.PG | im.R
    assert [m["id"] for m in client.get("/api/v1/models?nsfw=false").get_json()["items"]] == []


def test_rating_game_resists_reporters_fresh_accounts_blocking_and_unconfirmed_lowering(client, worker, alice, bob,
                                                                                        tmp_path):
    mod_user, mod_key = make_user("mona", role="moderator")
    images = [ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / f"{i}.png", "p", seed=i))
              for i in range(3)]
    vote = lambda key, image, level: client.post(f"/api/v1/rating-game/{image.id}",  # noqa: E731
                                                 headers=auth(key), json={"level": level})
    # a reporter is not served the image they reported, and cannot vote on it
    assert client.post(f"/api/v1/images/{images[0].id}/report", headers=auth(bob[1]),
                       json={"reason": "too much"}).status_code == 202
    assert client.get("/api/v1/rating-game/next", headers=auth(bob[1])).get_json()["item"] is None
    refused = vote(bob[1], images[0], "XXX")
    assert refused.status_code == 403 and "reported" in refused.get_json()["error"]
    # three fresh accounts cannot settle a level (nor hide the image)
    fresh = [make_user(f"fresh{i}") for i in range(3)]
    answers = [vote(key, images[0], "XXX").get_json() for _, key in fresh]
    assert [a["settled"] for a in answers] == [False, False, False]
    assert im.Image.get_by_id(images[0].id).nsfw_level == im.PG
    # even three trusted raters (old accounts with a record of agreeing with moderators)...
    trusted = [make_user(f"trusted{i}") for i in range(3)]
    aged([u for u, _ in trusted])
    for user, _ in trusted:
        im.Rater.create(user=user, weight=1.2, votes=5, agreed=5)
    im.Image.update(needs_review=True).where(im.Image.id.in_([i.id for i in images[1:]])).execute()
    # ...cannot block: that is a moderator's decision
    blocked = vote(trusted[0][1], images[1], "Blocked")
    assert blocked.status_code == 403 and "moderators" in blocked.get_json()["error"]
    # ...may raise a level
    raised = [vote(key, images[1], "R").get_json() for _, key in trusted]
    assert [r["settled"] for r in raised] == [False, False, True]
    assert im.Image.get_by_id(images[1].id).nsfw_level == im.R
    # ...but a lowering goes to the moderators instead of applying
    im.Image.update(nsfw_level=im.X, nsfw_source="detector").where(im.Image.id == images[2].id).execute()
    lowered = [vote(key, images[2], "PG").get_json() for _, key in trusted]
    assert [r["settled"] for r in lowered] == [False, False, False] and lowered[-1]["proposedLevel"] == im.PG
    assert im.Image.get_by_id(images[2].id).nsfw_level == im.X
    queue = client.get("/api/v1/moderation/queue", headers=auth(mod_key)).get_json()["items"]
    assert {q["id"]: q["proposedLevel"] for q in queue}[images[2].id] == im.PG
    from tests.functional.test_web_pages import log_in
    log_in(client, mod_user)
    assert "Raters propose lowering it to <b>PG</b>" in client.get("/moderation").get_data(as_text=True)
    newcomer = make_user("newcomer")
    assert client.get("/api/v1/rating-game/next", headers=auth(newcomer[1])).get_json()["item"]["id"] == images[0].id
    assert vote(newcomer[1], images[2], "PG").status_code == 404  # waiting for a moderator, out of the game
    confirmed = client.post(f"/api/v1/moderation/images/{images[2].id}", headers=auth(mod_key),
                            json={"action": "set-level", "level": "PG"}).get_json()
    assert confirmed["nsfwLevel"] == im.PG and confirmed["proposedLevel"] is None


def test_resource_links_prefer_a_published_copy_to_an_older_draft(client, worker, alice, bob, tmp_path):
    from tests.helpers import catalog_model, tiny_safetensors
    same = tiny_safetensors("shared bytes")
    catalog_model(bob[0], "Bob's draft copy", publish=False, file_bytes=same)  # the oldest copy of the bytes
    public = catalog_model(alice[0], "Alice's release", file_bytes=same).versions.get()
    autov2 = public.files.get().blob[:10]
    carol = make_user("carol")
    image = ready_image(client, worker, carol[1], factories.png_with_parameters(
        tmp_path / "c.png", factories.A1111_TEXT.format(model_hash=autov2)))
    assert [r.version_id for r in image.resources] == [public.id]  # never bob's draft, which would show its id
    assert client.get("/api/v1/images").get_json()["items"][0]["modelVersionIds"] == [public.id]


def test_image_listings_do_not_reveal_someone_elses_draft_versions(client, worker, alice, bob, tmp_path):
    from tests.helpers import catalog_model
    draft = catalog_model(alice[0], "Unreleased", publish=False)
    version = draft.versions.get()
    image = ready_image(client, worker, alice[1], factories.png_with_parameters(tmp_path / "a.png", "p"),
                        modelVersionId=str(version.id))
    for query in (f"modelVersionId={version.id}", f"modelId={draft.id}"):
        assert client.get(f"/api/v1/images?{query}", headers=auth(bob[1])).get_json()["items"] == []
        mine = client.get(f"/api/v1/images?{query}", headers=auth(alice[1])).get_json()["items"]
        assert [i["modelVersionIds"] for i in mine] == [[version.id]]
    for path in ("/api/v1/images", f"/api/v1/images/{image.id}"):
        body = client.get(path, headers=auth(bob[1])).get_json()
        assert [i["modelVersionIds"] for i in body.get("items", [body])] == [[]]
