import hashlib
import io
import os
import zlib

import blake3

from models_db.hashing import AUTOV1_LENGTH, AUTOV1_OFFSET, hash_file, hash_stream


def reference(data: bytes) -> dict:
    sha = hashlib.sha256(data).hexdigest().upper()
    return {"SHA256": sha, "AutoV2": sha[:10], "CRC32": f"{zlib.crc32(data):08X}",
            "BLAKE3": blake3.blake3(data).hexdigest().upper(),
            "AutoV1": hashlib.sha256(data[AUTOV1_OFFSET:AUTOV1_OFFSET + AUTOV1_LENGTH]).hexdigest()[:8].upper()}


def test_all_hashes_match_independent_implementations(tmp_path):
    data = os.urandom(20 * 1024 * 1024 + 123)  # several read chunks, AutoV1 slice inside the first
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    seen = []
    assert hash_file(path, progress=seen.append) == reference(data)
    assert sum(seen) == len(data)


def test_autov1_slice_spanning_a_chunk_boundary(monkeypatch):
    import models_db.hashing as hashing
    monkeypatch.setattr(hashing, "CHUNK", AUTOV1_OFFSET + 100)  # slice split across two reads
    data = os.urandom(3 * 1024 * 1024)
    assert hash_stream(io.BytesIO(data)) == reference(data)


def test_small_file_has_no_autov1():
    hashes = hash_stream(io.BytesIO(b"tiny"))
    assert "AutoV1" not in hashes
    assert hashes["SHA256"] == hashlib.sha256(b"tiny").hexdigest().upper()
    assert hashes["AutoV2"] == hashes["SHA256"][:10]
