"""atelier import-model: store once, hash, scan, recognise; bad files leave nothing behind."""
import hashlib
import json

from models_db.catalog import Model, ModelFile, ModelVersion
from models_db.notifications import Notification
from models_db.storage import get_store
from tests import factories
from tests.helpers import auth, cli, import_model


def blob_count() -> int:
    root = get_store().root
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_import_prints_ids_and_hashes(tmp_path, client):
    path = factories.safetensors_file(tmp_path / "dream.safetensors", "SDXL", min_bytes=3 << 20)
    out = import_model(path, "--name", "Dream", "--type", "Checkpoint", "--trained-words", "a, b",
                       "--tags", "Photo,landscape", "--publish")
    sha = hashlib.sha256(path.read_bytes()).hexdigest().upper()
    assert out["hashes"]["SHA256"] == sha and out["hashes"]["AutoV2"] == sha[:10]
    assert set(out["hashes"]) == {"SHA256", "AutoV1", "AutoV2", "CRC32", "BLAKE3"}
    assert (out["architecture"], out["baseModel"], out["versionStatus"]) == ("SDXL", "SDXL 1.0", "Published")
    version = client.get(f"/api/v1/model-versions/{out['versionId']}").get_json()
    assert version["trainedWords"] == ["a", "b"] and version["modelId"] == out["modelId"]
    model = client.get(f"/api/v1/models/{out['modelId']}").get_json()
    assert model["tags"] == ["landscape", "photo"] and model["name"] == "Dream"


def test_same_bytes_are_stored_once(tmp_path):
    path = factories.safetensors_file(tmp_path / "a.safetensors")
    first = import_model(path, "--base-model", "SD 1.5")
    again = cli("import-model", path)
    assert again.exit_code == 0 and json.loads(again.stdout)["existing"] is True
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(path.read_bytes())
    second = import_model(copy, "--allow-duplicate", "--name", "Copy")
    assert second["fileId"] != first["fileId"] and second["hashes"] == first["hashes"]
    assert blob_count() == 1


def test_truncated_file_is_rejected_and_nothing_is_stored(tmp_path):
    path = factories.truncate(factories.safetensors_file(tmp_path / "broken.safetensors"), 500)
    result = cli("import-model", path, "--name", "Broken", "--base-model", "SD 1.5")
    assert result.exit_code == 1
    assert "truncated safetensors file" in result.output and "500 missing" in result.output
    assert Model.select().count() == ModelVersion.select().count() == ModelFile.select().count() == 0
    assert blob_count() == 0


def test_dangerous_pickle_is_flagged_refused_for_download_and_owner_told(tmp_path, client, worker):
    from tests.conftest import make_user, run_jobs
    owner, key = make_user("carol", role="admin")
    path = factories.malicious_checkpoint(tmp_path / "evil.ckpt")
    result = cli("import-model", path, "--name", "Evil", "--base-model", "SD 1.5", "--owner", "carol", "--publish")
    assert result.exit_code == 3
    out = json.loads(result.stdout)
    assert out["pickleScanResult"] == "Danger" and "system" in out["pickleScanMessage"]
    assert out["versionStatus"] == "Draft"  # never published
    response = client.get(f"/api/download/models/{out['versionId']}", headers=auth(key))
    assert response.status_code == 403 and "not downloadable" in response.get_json()["error"]
    run_jobs(worker)
    note = Notification.get(Notification.user == owner)
    assert note.kind == "file-danger" and "evil.ckpt" in note.message and "system" in note.message
    told = client.get("/api/v1/notifications", headers=auth(key)).get_json()["items"]
    assert [n["message"] for n in told] == [note.message]


def test_login_required_and_unknown_owner(tmp_path):
    path = factories.safetensors_file(tmp_path / "a.safetensors", "LoRA")
    result = cli("import-model", path, "--type", "LORA", "--base-model", "SD 1.5", "--owner", "nobody")
    assert result.exit_code == 1 and "no user named 'nobody'" in result.output
    assert Model.select().count() == 0


def test_base_model_must_be_known_when_it_cannot_be_guessed(tmp_path):
    path = factories.safetensors_file(tmp_path / "emb.safetensors", "TextualInversion")
    result = cli("import-model", path, "--type", "TextualInversion")
    assert result.exit_code == 2 and "--base-model" in result.output
