"""Every hash the catalog knows (SHA256, AutoV1, AutoV2, CRC32, BLAKE3), in one streaming pass.

SHA256 runs on the calling thread while CRC32 and BLAKE3 run on a second one; all three release the
GIL, so on two cores the pass costs about as much as SHA256 alone.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import zlib
from typing import BinaryIO, Callable

import blake3

CHUNK = 8 << 20
AUTOV1_OFFSET, AUTOV1_LENGTH = 0x100000, 0x10000


def _side_hashes(chunks: queue.Queue, out: dict) -> None:
    crc, b3 = 0, blake3.blake3()
    while (chunk := chunks.get()) is not None:
        crc = zlib.crc32(chunk, crc)
        b3.update(chunk)
    out["CRC32"], out["BLAKE3"] = f"{crc:08X}", b3.hexdigest().upper()


def hash_stream(stream: BinaryIO, progress: Callable[[int], None] | None = None) -> dict[str, str]:
    sha, autov1_slice, offset = hashlib.sha256(), bytearray(), 0
    side: dict = {}
    chunks: queue.Queue = queue.Queue(maxsize=4)
    worker = threading.Thread(target=_side_hashes, args=(chunks, side), daemon=True)
    worker.start()
    try:
        while chunk := stream.read(CHUNK):
            chunks.put(chunk)
            sha.update(chunk)
            end = offset + len(chunk)
            want_from, want_to = AUTOV1_OFFSET, AUTOV1_OFFSET + AUTOV1_LENGTH
            if offset < want_to and end > want_from:
                autov1_slice += chunk[max(want_from - offset, 0):min(want_to, end) - offset]
            offset = end
            if progress:
                progress(len(chunk))
    finally:
        chunks.put(None)
        worker.join()
    digest = sha.hexdigest().upper()
    hashes = {"SHA256": digest, "AutoV2": digest[:10], **side}
    if autov1_slice:
        hashes["AutoV1"] = hashlib.sha256(autov1_slice).hexdigest()[:8].upper()
    return hashes


def hash_file(path, progress=None) -> dict[str, str]:
    with open(path, "rb", buffering=0) as stream:
        return hash_stream(stream, progress)


def sha256_stream(stream: BinaryIO, sink: BinaryIO | None = None) -> tuple[str, int]:
    """SHA256 (lower-case) and size of a stream, copying it into sink on the way."""
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        sha.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return sha.hexdigest(), size
