"""GET /api/download/models/:id — selection, auth, 307 to a signed link, Range, counting."""
import pytest

from models_db.catalog import Model, ModelVersion
from models_db.downloads import Download, record
from tests import factories
from tests.conftest import run_jobs
from tests.helpers import auth, import_model


@pytest.fixture
def imported(tmp_path, alice):
    path = factories.safetensors_file(tmp_path / "dream.safetensors", "SD1", min_bytes=2 << 20)
    out = import_model(path, "--name", "Dream", "--publish", "--owner", "alice")
    return out, path.read_bytes()


def follow(client, url, **kw):
    first = client.get(url, **kw)
    assert first.status_code == 307, first.get_json()
    location = first.headers["Location"]
    assert location.startswith("http://localhost/") and "token" not in location
    return client.get(location.replace("http://localhost", ""), headers=kw.get("range_headers", {}))


def test_download_redirects_to_identical_bytes(client, imported):
    out, data = imported
    final = follow(client, f"/api/download/models/{out['versionId']}")
    assert final.status_code == 200 and final.data == data
    assert final.headers["Content-Length"] == str(len(data))
    assert final.headers["Content-Disposition"] == 'attachment; filename="dream.safetensors"'


def test_range_requests(client, imported):
    out, data = imported
    location = client.get(f"/api/download/models/{out['versionId']}").headers["Location"]
    part = client.get(location, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(location, headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.data == data[-10:]
    assert client.get(location, headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416


def test_signed_link_cannot_be_forged_or_reused_for_another_file(client, imported):
    out, _ = imported
    location = client.get(f"/api/download/models/{out['versionId']}").headers["Location"]
    forged = location.replace(f"/files/{out['fileId']}/", f"/files/{out['fileId'] + 1}/")
    assert client.get(forged).status_code == 403
    assert client.get(location.split("&sig=")[0] + "&sig=0000").get_json()["error"] == "invalid download link"


def test_login_required_needs_a_key_by_header_or_query(client, tmp_path, alice, bob):
    path = factories.safetensors_file(tmp_path / "gated.safetensors", "LoRA")
    out = import_model(path, "--type", "LORA", "--base-model", "SD 1.5", "--login-required", "--publish",
                       "--owner", "alice")
    url = f"/api/download/models/{out['versionId']}"
    refused = client.get(url)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "Unauthorized" and "logged in" in refused.get_json()["message"]
    assert client.get(url, headers=auth("atl_wrong")).status_code == 401
    assert follow(client, url, headers=auth(bob[1])).data == path.read_bytes()
    assert follow(client, f"{url}?token={bob[1]}").data == path.read_bytes()


def test_file_selection(client, tmp_path, alice):
    from jobs.ingest import ingest
    from models_db.catalog import ModelFile
    from models_db.storage import get_store
    out = import_model(factories.safetensors_file(tmp_path / "m.safetensors", "SD1"), "--publish", "--owner", "alice")
    fp32 = factories.safetensors_file(tmp_path / "m32.safetensors", "SD1", dtype="float32")
    sha, size = get_store().put_path(fp32)
    extra = ModelFile.create(version=out["versionId"], name="m32.safetensors", blob=sha, size_bytes=size,
                             type="Pruned Model")
    assert ingest(extra.id).status == "Ready"
    pick = lambda q: client.get(f"/api/download/models/{out['versionId']}{q}").headers.get("Location", "")  # noqa: E731
    assert "/m.safetensors" in pick("")
    assert "/m32.safetensors" in pick("?fp=fp32") and "/m32.safetensors" in pick("?type=Pruned Model")
    assert client.get(f"/api/download/models/{out['versionId']}?format=PickleTensor").status_code == 404
    assert client.get("/api/download/models/9999").get_json() == {"error": "No model version with id 9999"}


def test_downloads_are_counted_once_by_the_actor(client, imported, worker):
    out, _ = imported
    for _ in range(3):
        client.get(f"/api/download/models/{out['versionId']}")
    assert client.head(f"/api/download/models/{out['versionId']}").status_code == 307  # a probe, not counted
    run_jobs(worker)
    assert ModelVersion.get_by_id(out["versionId"]).download_count == 3
    assert Model.get_by_id(out["modelId"]).download_count == 3
    assert client.get(f"/api/v1/models/{out['modelId']}").get_json()["stats"]["downloadCount"] == 3
    # at-least-once delivery: a redelivered message does not count twice
    download_id = Download.select().first().id
    assert record(download_id, out["fileId"], None) is False
    assert ModelVersion.get_by_id(out["versionId"]).download_count == 3


def test_draft_versions_download_only_for_owner(client, tmp_path, alice, bob):
    out = import_model(factories.safetensors_file(tmp_path / "d.safetensors"), "--owner", "alice",
                       "--base-model", "SD 1.5")
    url = f"/api/download/models/{out['versionId']}"
    assert client.get(url).status_code == 404
    assert client.get(url, headers=auth(bob[1])).status_code == 404
    assert client.get(url, headers=auth(alice[1])).status_code == 307
