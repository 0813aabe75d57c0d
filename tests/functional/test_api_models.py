"""GET /api/v1/models and friends, field for field as Civitai clients expect."""
from datetime import timedelta

import pytest

from models_db.catalog import Model
from tests.helpers import auth, catalog_model


def items(client, url, **kw):
    response = client.get(url, **kw)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_model_shape(client, alice):
    catalog_model(alice[0], "Alpha", tags=["style"], model_type="LORA")
    body = items(client, "/api/v1/models")
    assert body["metadata"]["pageSize"] == 100 and "nextCursor" not in body["metadata"]
    m = body["items"][0]
    for key in ("id", "name", "description", "type", "poi", "nsfw", "nsfwLevel", "allowNoCredit",
                "allowCommercialUse", "allowDerivatives", "allowDifferentLicense", "minor", "availability",
                "cosmetic", "stats", "creator", "tags", "modelVersions"):
        assert key in m
    assert m["creator"]["username"] == "alice" and m["tags"] == ["style"]
    assert set(m["allowCommercialUse"]) <= {"None", "Image", "Rent", "Sell"}
    v = m["modelVersions"][0]
    assert "modelId" not in v and "model" not in v
    f = v["files"][0]
    from tests.helpers import tiny_safetensors
    assert f["sizeKB"] * 1024 == len(tiny_safetensors("Alpha")) and f["primary"] is True
    assert f["hashes"]["SHA256"] == f["hashes"]["SHA256"].upper()
    assert f["downloadUrl"].startswith("http://localhost/api/download/models/")
    assert v["air"] == f"urn:air:sd1:lora:civitai:{m['id']}@{v['id']}"


def test_filters(client, alice, bob):
    catalog_model(alice[0], "Sunset Lora", model_type="LORA", tags=["landscape"])
    catalog_model(alice[0], "Portrait XL", base_model="SDXL 1.0", nsfw=True)
    catalog_model(bob[0], "Bob Flux", base_model="Flux.1 D", model_type="Checkpoint", allow_no_credit=False)
    from jobs.search import flush_search_index
    flush_search_index.fn()  # ?query= goes through the search index
    names = lambda url: sorted(m["name"] for m in items(client, url)["items"])  # noqa: E731
    assert names("/api/v1/models?types=LORA") == ["Sunset Lora"]
    assert names("/api/v1/models?types=LORA&types=Checkpoint") == names("/api/v1/models?types=LORA,Checkpoint") \
        == ["Bob Flux", "Portrait XL", "Sunset Lora"]
    assert names("/api/v1/models?baseModels=SDXL 1.0,Flux.1 D") == ["Bob Flux", "Portrait XL"]
    assert names("/api/v1/models?tag=Landscape") == ["Sunset Lora"]
    assert names("/api/v1/models?username=bob") == ["Bob Flux"]
    assert names("/api/v1/models?nsfw=false") == ["Bob Flux", "Sunset Lora"]
    assert names("/api/v1/models?query=portrait") == ["Portrait XL"]
    assert names("/api/v1/models?query=&whatever=1") == ["Bob Flux", "Portrait XL", "Sunset Lora"]
    assert names("/api/v1/models?allowNoCredit=false") == ["Bob Flux"]
    ids = [m.id for m in Model.select().order_by(Model.id)][:2]
    assert len(items(client, f"/api/v1/models?ids={ids[0]}&ids={ids[1]}")["items"]) == 2


@pytest.mark.parametrize("url,fragment", [
    ("/api/v1/models?limit=0", "limit"), ("/api/v1/models?limit=101", "limit"),
    ("/api/v1/models?types=Nope", "unknown model type"), ("/api/v1/models?sort=Best", "sort"),
    ("/api/v1/models?nsfw=maybe", "nsfw"), ("/api/v1/models?cursor=%%%", "cursor"),
    ("/api/v1/models?period=Decade", "period"),
])
def test_bad_parameters_get_400_json(client, url, fragment):
    response = client.get(url)
    assert response.status_code == 400 and fragment in response.get_json()["error"]


def test_sorts(client, alice):
    catalog_model(alice[0], "Low", downloads=5, rating=4.9)
    catalog_model(alice[0], "High", downloads=50, rating=3.0)
    catalog_model(alice[0], "Newest", downloads=1, rating=1.0)
    order = lambda sort: [m["name"] for m in items(client, f"/api/v1/models?sort={sort}")["items"]]  # noqa: E731
    assert order("Most Downloaded") == ["High", "Low", "Newest"]
    assert order("Highest Rated") == ["Low", "High", "Newest"]
    assert order("Newest") == ["Newest", "High", "Low"]


@pytest.mark.parametrize("sort", ["Newest", "Most Downloaded", "Highest Rated"])
def test_cursor_walk_never_skips_or_repeats_while_rows_are_added(client, alice, sort):
    for i in range(23):
        catalog_model(alice[0], f"m{i}", downloads=i % 4, rating=float(i % 3))
    before = {m.id for m in Model.select()}
    seen, url, added = [], f"/api/v1/models?limit=5&sort={sort}", 0
    while url:
        body = items(client, url.replace("http://localhost", ""))
        seen += [m["id"] for m in body["items"]]
        catalog_model(alice[0], f"late{added}", downloads=9, rating=5.0)  # lands before the cursor
        added += 1
        meta = body["metadata"]
        assert meta.get("nextCursor") != ""
        url = meta.get("nextPage") if meta.get("nextCursor") else None
        if url:
            assert isinstance(meta["nextCursor"], str) and url.startswith("http://localhost/api/v1/models?")
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


def test_page_paging_metadata(client, alice):
    for i in range(7):
        catalog_model(alice[0], f"p{i}")
    body = items(client, "/api/v1/models?limit=3&page=2")
    meta = body["metadata"]
    assert (meta["totalItems"], meta["currentPage"], meta["totalPages"], meta["pageSize"]) == (7, 2, 3, 3)
    assert "page=3" in meta["nextPage"] and "page=1" in meta["prevPage"]
    assert len(body["items"]) == 3


def test_period_filter(client, alice):
    old = catalog_model(alice[0], "Old")
    Model.update(published_at=old.published_at - timedelta(days=40)).where(Model.id == old.id).execute()
    catalog_model(alice[0], "Fresh")
    assert [m["name"] for m in items(client, "/api/v1/models?period=Month")["items"]] == ["Fresh"]
    assert len(items(client, "/api/v1/models?period=AllTime")["items"]) == 2


def test_drafts_are_visible_only_to_their_owner(client, alice, bob):
    draft = catalog_model(alice[0], "Secret", publish=False)
    assert items(client, "/api/v1/models")["items"] == []
    assert client.get(f"/api/v1/models/{draft.id}").status_code == 404
    assert client.get(f"/api/v1/models/{draft.id}", headers=auth(bob[1])).status_code == 404
    mine = client.get(f"/api/v1/models/{draft.id}", headers=auth(alice[1])).get_json()
    assert mine["status"] == "Draft" and mine["modelVersions"][0]["status"] == "Draft"
    version_id = mine["modelVersions"][0]["id"]
    assert client.get(f"/api/v1/model-versions/{version_id}").status_code == 404
    assert client.get(f"/api/v1/model-versions/{version_id}?token={alice[1]}").status_code == 200


def test_not_found_is_json(client):
    response = client.get("/api/v1/models/999")
    assert response.status_code == 404 and response.get_json() == {"error": "No model with id 999"}
    assert client.get("/api/v1/nowhere").get_json() == {"error": "Not found"}


def test_by_hash_every_type_any_case(client, alice, tmp_path):
    from tests.factories import safetensors_file
    big = safetensors_file(tmp_path / "big.safetensors", min_bytes=2 << 20).read_bytes()
    model = catalog_model(alice[0], "Hashy", file_bytes=big)
    version = client.get(f"/api/v1/models/{model.id}").get_json()["modelVersions"][0]
    hashes = version["files"][0]["hashes"]
    assert set(hashes) == {"SHA256", "AutoV1", "AutoV2", "CRC32", "BLAKE3"}
    for value in hashes.values():
        for variant in (value, value.lower()):
            found = client.get(f"/api/v1/model-versions/by-hash/{variant}").get_json()
            assert found["id"] == version["id"] and found["modelId"] == model.id
            assert found["model"] == {"name": "Hashy", "type": "Checkpoint", "nsfw": False, "poi": False}
    assert client.get("/api/v1/model-versions/by-hash/DEADBEEF").status_code == 404
    many = client.post("/api/v1/model-versions/by-hash", json=[hashes["SHA256"].lower(), "00" * 32])
    assert [v["id"] for v in many.get_json()] == [version["id"]]
    assert client.post("/api/v1/model-versions/by-hash", json=["x"] * 101).status_code == 400
    assert client.post("/api/v1/model-versions/by-hash", json={"a": 1}).status_code == 400


def test_tags_creators_enums_me(client, alice, bob):
    catalog_model(alice[0], "A", tags=["style", "anime"])
    catalog_model(alice[0], "B", tags=["style"])
    catalog_model(bob[0], "C", tags=["anime"], publish=False)
    tags = items(client, "/api/v1/tags")["items"]
    assert {t["name"]: t["modelCount"] for t in tags} == {"style": 2, "anime": 1}
    assert tags[0]["link"].endswith("/api/v1/models?tag=style")
    first = items(client, "/api/v1/tags?limit=1")
    assert first["metadata"]["nextCursor"] == "2" and first["items"][0]["name"] == "style"
    assert items(client, "/api/v1/tags?limit=1&cursor=2")["items"][0]["name"] == "anime"
    creators = items(client, "/api/v1/creators")["items"]
    assert [(c["username"], c["modelCount"]) for c in creators] == [("alice", 2)]
    enums = items(client, "/api/v1/enums")
    assert "LORA" in enums["ModelType"] and "SDXL 1.0" in enums["BaseModel"]
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers=auth("wrong")).status_code == 401
    me = items(client, "/api/v1/me", headers=auth(alice[1]))
    assert me["username"] == "alice" and me["id"] == alice[0].id


def test_by_hash_prefers_the_versions_the_asker_can_see(client, alice, bob):
    from tests.conftest import make_user
    from tests.helpers import tiny_safetensors
    same = tiny_safetensors("shared bytes")
    draft = catalog_model(bob[0], "Bob's draft copy", publish=False, file_bytes=same)  # the oldest copy
    public = catalog_model(alice[0], "Alice's release", file_bytes=same)
    draft_version, public_version = draft.versions.get().id, public.versions.get().id
    sha = client.get(f"/api/v1/model-versions/{public_version}").get_json()["files"][0]["hashes"]["SHA256"]
    for path in (f"/api/v1/model-versions/by-hash/{sha}", f"/api/v1/model-versions/by-hash/{sha[:10].lower()}"):
        found = client.get(path)
        assert found.status_code == 200, found.get_json()
        assert found.get_json()["id"] == public_version
    assert [v["id"] for v in client.post("/api/v1/model-versions/by-hash", json=[sha]).get_json()] == [public_version]
    # the draft's owner and staff see both: the published copy still comes first, the same every time
    _, mod_key = make_user("mona", role="moderator")
    for key in (bob[1], mod_key, alice[1]):
        assert client.get(f"/api/v1/model-versions/by-hash/{sha}", headers=auth(key)).get_json()["id"] == public_version
    # with no published copy left, the owner still finds their draft; nobody else does
    Model.update(status="Unpublished").where(Model.id == public.id).execute()
    assert client.get(f"/api/v1/model-versions/by-hash/{sha}").status_code == 404
    assert client.get(f"/api/v1/model-versions/by-hash/{sha}", headers=auth(bob[1])).get_json()["id"] == draft_version
    assert client.get(f"/api/v1/model-versions/by-hash/{sha}", headers=auth(alice[1])).get_json()["id"] == \
        public_version
