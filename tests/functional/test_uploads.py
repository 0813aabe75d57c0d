"""Creator endpoints: create a model and version, upload (multipart or resumable chunks), publish."""
import bz2
import gzip
import hashlib
import io
import lzma
import pickle
import zipfile

import pytest

from models_db.catalog import ModelFile
from models_db.storage import get_store
from models_db.uploads import Upload
from tests import factories
from tests.conftest import make_user, run_jobs
from tests.helpers import auth


def new_version(client, key, **model_fields):
    model = client.post("/api/v1/models", headers=auth(key), json={
        "name": "Inkwash", "type": "LORA", "tags": ["Ink", "style"],
        "description": "<p>ink</p><script>alert(1)</script>", **model_fields})
    assert model.status_code == 201, model.get_json()
    version = client.post("/api/v1/model-versions", headers=auth(key), json={
        "modelId": model.get_json()["id"], "name": "v1", "baseModel": "SD 1.5", "trainedWords": ["inkwash"]})
    assert version.status_code == 201, version.get_json()
    return model.get_json(), version.get_json()


def test_create_upload_ingest_publish(client, worker, alice, tmp_path):
    model, version = new_version(client, alice[1])
    assert model["status"] == "Draft" and "<script>" not in model["description"]
    data = factories.safetensors_file(tmp_path / "ink.safetensors", "LoRA").read_bytes()
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(data), "ink.safetensors")}, content_type="multipart/form-data")
    assert sent.status_code == 202 and sent.get_json()["state"] == "processing"
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert upload["state"] == "done" and upload["processed"] == len(data) and upload["fileId"]
    published = client.post(f"/api/v1/model-versions/{version['id']}/publish", headers=auth(alice[1]))
    assert published.status_code == 200 and published.get_json()["status"] == "Published"
    found = client.get(f"/api/v1/model-versions/by-hash/{hashlib.sha256(data).hexdigest()}").get_json()
    assert found["id"] == version["id"] and found["files"][0]["metadata"]["format"] == "SafeTensor"
    listed = client.get("/api/v1/models?types=LORA").get_json()["items"][0]
    assert listed["tags"] == ["ink", "style"] and listed["status"] == "Published"


def test_resumable_upload_in_chunks(client, worker, alice, tmp_path):
    _, version = new_version(client, alice[1])
    data = factories.safetensors_file(tmp_path / "big.safetensors", "LoRA", min_bytes=3 << 20).read_bytes()
    start = client.post("/api/v1/uploads", headers=auth(alice[1]), json={
        "modelVersionId": version["id"], "filename": "big.safetensors", "size": len(data)})
    assert start.status_code == 201
    upload = start.get_json()
    url = upload["uploadUrl"].replace("http://localhost", "")
    chunk = 1 << 20

    def put(offset, body, total=len(data)):
        return client.put(url, data=body, headers={**auth(alice[1]), "Content-Range":
                                                   f"bytes {offset}-{offset + len(body) - 1}/{total}"})
    assert put(0, data[:chunk]).get_json()["offset"] == chunk
    wrong = put(0, data[:chunk])  # a client that lost track: told where to resume
    assert wrong.status_code == 409 and wrong.get_json()["offset"] == chunk
    short = client.put(url, data=data[chunk:chunk + 10], headers={
        **auth(alice[1]), "Content-Range": f"bytes {chunk}-{2 * chunk - 1}/{len(data)}"})
    assert short.status_code == 400
    assert client.get(url, headers=auth(alice[1])).get_json()["offset"] == chunk
    offset = chunk
    while offset < len(data):
        body = put(offset, data[offset:offset + chunk]).get_json()
        offset = body["offset"]
    assert body["state"] == "processing"
    run_jobs(worker)
    file = ModelFile.get_by_id(Upload.get_by_id(upload["id"]).file_id)
    assert file.status == "Ready" and file.size_bytes == len(data)
    with get_store().open(file.blob) as stored:
        assert stored.read() == data


def test_rejected_upload_leaves_no_file_or_blob(client, worker, alice, tmp_path):
    _, version = new_version(client, alice[1])
    data = factories.truncate(factories.safetensors_file(tmp_path / "t.safetensors", "LoRA")).read_bytes()
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(data), "t.safetensors")}, content_type="multipart/form-data")
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert upload["state"] == "rejected" and "truncated safetensors file" in upload["error"]
    assert ModelFile.select().count() == 0
    assert not get_store().exists(hashlib.sha256(data).hexdigest())
    refused = client.post(f"/api/v1/model-versions/{version['id']}/publish", headers=auth(alice[1]))
    assert refused.status_code == 409


@pytest.mark.parametrize("body,fragment", [
    ({"type": "LORA"}, "name is required"), ({"name": "x", "type": "Car"}, "type must be one of"),
    ({"name": "x", "type": "LORA", "tags": "a"}, "tags must be a list"),
    ({"name": "x", "type": "LORA", "nsfw": "yes"}, "nsfw must be true or false"),
])
def test_invalid_model_bodies(client, alice, body, fragment):
    response = client.post("/api/v1/models", headers=auth(alice[1]), json=body)
    assert response.status_code == 400 and fragment in response.get_json()["error"]


def test_scopes_and_ownership(client, alice, bob):
    _, reader = make_user("reader", scope="read")
    assert client.post("/api/v1/models", json={"name": "x", "type": "LORA"}).status_code == 401
    denied = client.post("/api/v1/models", headers=auth(reader), json={"name": "x", "type": "LORA"})
    assert denied.status_code == 403 and "write" in denied.get_json()["error"]
    model, version = new_version(client, alice[1])
    assert client.post("/api/v1/model-versions", headers=auth(bob[1]), json={
        "modelId": model["id"], "name": "v2", "baseModel": "SD 1.5"}).status_code == 404
    assert client.post("/api/v1/uploads", headers=auth(bob[1]), json={
        "modelVersionId": version["id"], "filename": "x.safetensors", "size": 10}).status_code == 404
    bad = client.post("/api/v1/uploads", headers=auth(alice[1]), json={
        "modelVersionId": version["id"], "filename": "../x", "size": -1})
    assert bad.status_code == 400 and Upload.select().count() == 0


def test_expired_uploads_are_cleared(client, alice):
    from datetime import timedelta

    from jobs.uploads import expire_uploads
    from models_db.db import utcnow
    from models_db.uploads import part_path
    _, version = new_version(client, alice[1])
    upload = client.post("/api/v1/uploads", headers=auth(alice[1]), json={
        "modelVersionId": version["id"], "filename": "x.safetensors", "size": 100}).get_json()
    assert part_path(upload["id"]).exists()
    Upload.update(updated_at=utcnow() - timedelta(days=3)).execute()
    assert expire_uploads.fn.__wrapped__() == 1
    assert Upload.get_by_id(upload["id"]).state == "rejected" and not part_path(upload["id"]).exists()


@pytest.mark.parametrize("model_type,filename,wrapped", [
    ("Other", "payload.bin", False), ("Workflows", "workflow.json", True), ("Poses", "pose.txt", False),
    ("Wildcards", "cards.txt", True), ("Checkpoint", "weights.pkl", False)])
def test_text_pickle_is_scanned_whatever_its_name_or_model_type(client, worker, alice, model_type, filename, wrapped):
    from models_db.notifications import Notification
    _, version = new_version(client, alice[1], type=model_type)
    payload = factories.protocol0_pickle(wrapped)
    assert payload[:1] in (b"c", b"(")
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(payload), filename)}, content_type="multipart/form-data")
    assert sent.status_code == 202
    run_jobs(worker)
    file = ModelFile.get(ModelFile.version == version["id"])
    assert (file.status, file.pickle_scan_result) == ("Danger", "Danger") and "system" in file.pickle_scan_message
    download = client.get(f"/api/download/models/{version['id']}", headers=auth(alice[1]))
    assert download.status_code == 403 and "not downloadable" in download.get_json()["error"]
    assert client.post(f"/api/v1/model-versions/{version['id']}/publish", headers=auth(alice[1])).status_code == 409
    note = Notification.get(Notification.user == alice[0])
    assert note.kind == "file-danger" and filename in note.message and "system" in note.message


def f16(begin: int, end: int, n: int = 4) -> dict:
    return {"dtype": "F16", "shape": [n], "data_offsets": [begin, end]}


@pytest.mark.parametrize("model_type,filename,data,reason", [
    ("LORA", "deep.safetensors", factories.raw_safetensors(b"[" * 100_000), "nested"),
    ("Other", "deep.bin", factories.raw_safetensors(b'{"a":' + b"[" * 100_000), "nested"),
    ("LORA", "overlap.safetensors", factories.raw_safetensors({"a": f16(0, 8), "b": f16(0, 8)}, b"\1" * 8),
     "invalid offset for tensor"),
    ("LORA", "gap.safetensors", factories.raw_safetensors({"a": f16(0, 8), "b": f16(10, 18)}, b"\1" * 18),
     "invalid offset for tensor `b`"),
    ("LORA", "meta.safetensors",
     factories.raw_safetensors({"__metadata__": {"a": [[1]]}, "a": f16(0, 8)}, b"\1" * 8), "expected a string"),
    *[("LORA", "types.safetensors", factories.raw_safetensors({"a": {**f16(0, 8), **bad}}, b"\1" * 8),
       "bad entry for tensor 'a'") for bad in (
        {"data_offsets": ["0", "8"]}, {"data_offsets": [0, 8.0]}, {"data_offsets": [False, 8]},
        {"data_offsets": [0, 8, 8]}, {"dtype": ["F16"]}, {"dtype": 16}, {"shape": ["4"]}, {"shape": [4.0]},
        {"shape": [-4, -1]}, {"shape": 4}, {"shape": [True, 4]})],
    ("LORA", "meta.safetensors", factories.raw_safetensors({"__metadata__": [["a", "b"]], "a": f16(0, 8)},
                                                           b"\1" * 8), "__metadata__ is not an object"),
    ("LORA", "entry.safetensors", factories.raw_safetensors({"a": [0, 8]}, b"\1" * 8), "bad entry for tensor 'a'"),
])
def test_hostile_safetensors_headers_are_rejected_with_a_reason(client, worker, alice, model_type, filename, data,
                                                                reason):
    _, version = new_version(client, alice[1], type=model_type)
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")
    assert sent.status_code == 202
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert upload["state"] == "rejected" and reason in upload["error"], upload
    assert ModelFile.select().count() == 0 and not get_store().exists(hashlib.sha256(data).hexdigest())


def test_rejected_upload_keeps_a_blob_someone_else_uses(client, worker, alice, bob, tmp_path):
    from models_db.images import Image
    image = client.post("/api/v1/images", headers=auth(alice[1]), content_type="multipart/form-data",
                        data={"file": (io.BytesIO(factories.png_bytes(seed=3)), "mine.png")})
    assert image.status_code == 202
    run_jobs(worker)
    url = f"/images/{image.get_json()['id']}/width=4096/mine.png"
    stored = client.get(url).data  # what anyone can fetch: the bytes of alice's stored image
    assert hashlib.sha256(stored).hexdigest() == Image.get_by_id(image.get_json()["id"]).blob
    _, version = new_version(client, bob[1])
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(bob[1]),
                       data={"file": (io.BytesIO(stored), "x.safetensors")}, content_type="multipart/form-data")
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(bob[1])).get_json()
    assert upload["state"] == "rejected"
    assert client.get(url).status_code == 200 and client.get(url).data == stored


def test_upload_whose_ingest_keeps_failing_ends_rejected(client, worker, alice, tmp_path):
    """An error nobody anticipated (ingest raises on an integer tensor key) must not leave the upload
    'processing' forever: once its retries (JOB_MAX_RETRIES=1 here) are spent it is rejected and cleaned up."""
    from models_db.notifications import Notification
    _, version = new_version(client, alice[1])
    data = factories.int_keyed_checkpoint(tmp_path / "keys.pt").read_bytes()
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(data), "keys.pt")}, content_type="multipart/form-data")
    assert sent.status_code == 202
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert upload["state"] == "rejected", upload
    assert upload["error"].startswith("processing failed: AttributeError") and "\n" not in upload["error"]
    assert ModelFile.select().count() == 0 and not get_store().exists(hashlib.sha256(data).hexdigest())
    notes = list(Notification.select().where(Notification.user == alice[0]))
    assert [n.kind for n in notes] == ["file-rejected"] and "keys.pt" in notes[0].message


def test_pickle_too_long_to_scan_is_rejected(client, worker, alice, tmp_path, configure):
    configure(PICKLE_SCAN_MAX_OPCODES="100000")
    _, version = new_version(client, alice[1], type="Other")
    data = factories.long_pickle(tmp_path / "history.pkl", items=200_000).read_bytes()
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(data), "history.pkl")}, content_type="multipart/form-data")
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert upload["state"] == "rejected" and "pickle too large to scan safely" in upload["error"], upload
    assert ModelFile.select().count() == 0 and not get_store().exists(hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("model_type,filename,members", [
    ("Poses", "poses.zip", {"pose/readme.txt": factories.protocol0_pickle()}),
    ("Other", "bundle.zip", {"notes.md": b"# notes\n", "data.txt": pickle.dumps(factories._Exploit(), protocol=2)}),
    ("Other", "bundle.zip", {"inner/more.zip": {"deep/pose.json": factories.protocol0_pickle(wrapped=True)}}),
    ("Other", "bundle.zip", {"x.bin": pickle.dumps(factories._Exploit(), protocol=4)}),
    ("Other", "bundle.zip", {"memo.json": b"\x80\x04X\x05\x00\x00\x00posix\x94X\x06\x00\x00\x00system\x94h\x00h\x01"
                                          b"\x93X\x04\x00\x00\x00echo\x85R."}),  # names fetched from the memo
    ("Wildcards", "cards.zip", {"a.zip": {"b.zip": {"cards.txt": factories.protocol0_pickle()}}}),
    ("Checkpoint", "model.ckpt", {"archive/data.pkl": pickle.dumps({"state_dict": {}}, protocol=2),
                                  "archive/version": b"3\n", "archive/extra.txt": factories.protocol0_pickle()}),
])
def test_pickles_in_zip_members_are_scanned_whatever_their_names(client, worker, alice, model_type, filename,
                                                                 members):
    """Every member of a zip (and of zips inside it) that parses as a pickle with globals is scanned,
    not only members picklescan picks by name (.pkl) or binary-pickle header."""
    assert_uploaded_as_danger(client, worker, alice[1], model_type, filename, factories.zip_bytes(members))


@pytest.mark.parametrize("filename,data", [
    ("history.pkl.gz", gzip.compress(pickle.dumps(factories._Exploit(), protocol=4))),
    ("notes.tar.gz", factories.tar_bytes({"notes/readme.txt": factories.protocol0_pickle()})),
    ("frame.pkl", bz2.compress(factories.protocol0_pickle(wrapped=True))),  # compression told by bytes, not name
    ("cache.xz", lzma.compress(pickle.dumps(factories._Exploit(), protocol=2))),
    ("cache.lzma", lzma.compress(pickle.dumps(factories._Exploit(), protocol=2), format=lzma.FORMAT_ALONE)),
    ("bundle.tar", factories.tar_bytes({"a.txt": b"hello\n", "b/c.json": factories.protocol0_pickle()}, "w")),
    ("bundle.zip", factories.zip_bytes({"data.bin": gzip.compress(factories.tar_bytes(
        {"x.txt": factories.protocol0_pickle()}, "w:bz2"))})),
    ("layers.tar.xz", factories.tar_bytes({"in.zip": factories.zip_bytes({"p.txt": factories.protocol0_pickle()}),
                                          "truncated.gz": gzip.compress(factories.protocol0_pickle())[:-8]},
                                          "w:xz")),
], ids=lambda value: value if isinstance(value, str) else "")
def test_pickles_in_compressed_files_and_tars_are_scanned(client, worker, alice, filename, data):
    """gzip, bz2 and xz/lzma streams (by magic bytes) are decompressed and tar members opened, as
    pandas.read_pickle and joblib.load do before loading: the pickle inside is judged like any file."""
    assert_uploaded_as_danger(client, worker, alice[1], "Other", filename, data)


def assert_uploaded_as_danger(client, worker, key, model_type, filename, data):
    """Uploads data as a new version's file: the worker's scan finds os.system, and it is not downloadable."""
    _, version = new_version(client, key, type=model_type)
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(key),
                       data={"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")
    assert sent.status_code == 202
    run_jobs(worker)
    file = ModelFile.get(ModelFile.version == version["id"])
    assert (file.status, file.pickle_scan_result) == ("Danger", "Danger"), file.pickle_scan_message
    assert "os.system" in file.pickle_scan_message or "posix.system" in file.pickle_scan_message
    download = client.get(f"/api/download/models/{version['id']}", headers=auth(key))
    assert download.status_code == 403 and "not downloadable" in download.get_json()["error"]


def test_zip_checkpoint_and_harmless_zip_still_pass(client, worker, alice, tmp_path):
    checkpoint = factories.torch_checkpoint(tmp_path / "model.ckpt").read_bytes()
    harmless = factories.zip_bytes({"readme.txt": b"Poses (front, side).\nUse with ControlNet.\n", "in.zip": {
        "pose.json": b'{"pose": [1, 2]}', "model.pkl": pickle.dumps({"a": [1, 2.5, "x"]}, protocol=2)}})
    texts = factories.tar_bytes({"cards/colors.txt": b"red\ngreen\n", "cards/readme.md": b"# Wildcards\n",
                                 "data.pkl.gz": gzip.compress(pickle.dumps([1, "x"], protocol=0))})
    for model_type, name, body in (("Checkpoint", "model.ckpt", checkpoint), ("Other", "extras.zip", harmless),
                                   ("Wildcards", "cards.tar.gz", texts)):
        _, version = new_version(client, alice[1], type=model_type)
        sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                           data={"file": (io.BytesIO(body), name)}, content_type="multipart/form-data")
        assert sent.status_code == 202, sent.get_json()
    run_jobs(worker)
    files = {f.name: f for f in ModelFile.select()}
    assert {n: (f.status, f.pickle_scan_result) for n, f in files.items()} == {
        "model.ckpt": ("Ready", "Success"), "extras.zip": ("Ready", "Success"), "cards.tar.gz": ("Ready", "Success")}
    assert files["model.ckpt"].format == "PickleTensor"


@pytest.mark.parametrize("settings_,members,reason", [
    ({"ARCHIVE_SCAN_MAX_DEPTH": "2"}, {"a.zip": {"b.zip": {"c.zip": {"x.txt": b"hi"}}}}, "nested deeper than 2"),
    ({"ARCHIVE_SCAN_MAX_BYTES": "1000000"},
     {"a.zip": factories.zip_bytes({"zeros.bin": b"\0" * 2_000_000}, zipfile.ZIP_STORED)},
     "more than 1000000 bytes"),
    ({"ARCHIVE_SCAN_MAX_BYTES": "1000000"}, gzip.compress(b"\0" * 2_000_000), "more than 1000000 bytes"),
    ({"ARCHIVE_SCAN_MAX_BYTES": "1000000"}, factories.tar_bytes({"zeros.bin": b"\0" * 2_000_000}, "w:bz2"),
     "more than 1000000 bytes"),
    ({"ARCHIVE_SCAN_MAX_DEPTH": "2"}, gzip.compress(gzip.compress(gzip.compress(gzip.compress(b"hi")))),
     "nested deeper than 2"),
], ids=["zip-depth", "zip-bytes", "gzip-bytes", "tar-bz2-bytes", "gzip-depth"])
def test_archives_too_deep_or_too_large_to_scan_are_rejected(client, worker, alice, configure, settings_, members,
                                                             reason):
    configure(**settings_)
    _, version = new_version(client, alice[1], type="Other")
    data = members if isinstance(members, bytes) else factories.zip_bytes(members)
    assert len(data) < 100_000
    sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(alice[1]),
                       data={"file": (io.BytesIO(data), "bomb.zip")}, content_type="multipart/form-data")
    run_jobs(worker)
    upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(alice[1])).get_json()
    assert upload["state"] == "rejected" and reason in upload["error"], upload
    assert ModelFile.select().count() == 0 and not get_store().exists(hashlib.sha256(data).hexdigest())


def test_rejected_upload_keeps_a_blob_another_writer_is_recording(client, worker, alice, bob):
    """Two writers of the same bytes: one has stored them (BlobStore.put_stream, as every writer does) and not
    yet recorded its row; the other's upload is rejected meanwhile. The blob stays (for rejection cleanup and
    the orphan sweep alike) while the first writer's pending mark holds, and goes once it is released."""
    from jobs.storage import remove_orphan_blobs
    from models_db.storage import holding
    data = factories.png_bytes(seed=11)
    sha = hashlib.sha256(data).hexdigest()
    with holding():
        assert get_store().put_stream(io.BytesIO(data))[0] == sha  # writer 1: stored, its row not written yet
        _, version = new_version(client, bob[1])
        sent = client.post(f"/api/v1/model-versions/{version['id']}/files", headers=auth(bob[1]),
                           data={"file": (io.BytesIO(data), "x.safetensors")}, content_type="multipart/form-data")
        run_jobs(worker)  # writer 2: stored the same bytes, then rejected
        upload = client.get(f"/api/v1/uploads/{sent.get_json()['id']}", headers=auth(bob[1])).get_json()
        assert upload["state"] == "rejected"
        assert get_store().exists(sha)
        assert remove_orphan_blobs.fn.__wrapped__(grace_s=0) == 0 and get_store().exists(sha)
    assert remove_orphan_blobs.fn.__wrapped__(grace_s=0) == 1 and not get_store().exists(sha)


def test_pending_mark_of_a_writer_that_never_records_expires(configure):
    import time

    from jobs.storage import remove_orphan_blobs
    configure(BLOB_PENDING_S="1")
    sha, _ = get_store().put_stream(io.BytesIO(b"stored, then the writer crashed"))
    assert remove_orphan_blobs.fn.__wrapped__(grace_s=-1) == 0 and get_store().exists(sha)
    time.sleep(1.2)
    assert remove_orphan_blobs.fn.__wrapped__(grace_s=-1) == 1 and not get_store().exists(sha)
