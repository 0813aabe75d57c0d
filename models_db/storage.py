"""Content-addressed blob storage: a local directory by default, S3 when STORAGE_URL is s3://."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlparse

import settings
from models_db.hashing import sha256_stream


class BlobMissing(LookupError):
    """A blob that rows name is not in the store (a lost disk, a hand clean-up)."""


# Pending references: a blob stored by a writer that has not yet committed the row naming it is marked,
# one token per writer, so that a rejected upload of the same bytes or the orphan sweep leaves it alone.
# A writer clears its marks after its commit (holding()); marks of other writers expire after BLOB_PENDING_S.
_held: ContextVar[list | None] = ContextVar("held_blobs", default=None)


def _pending_place(sha256: str) -> str:
    return f"blob-pending:{sha256}"


def mark_pending(sha256: str) -> None:
    from models_db.redis_store import take_place
    token = take_place(_pending_place(sha256), 1 << 40, settings.get().blob_pending_s)
    held = _held.get()
    if held is not None:
        held.append((sha256, token))


def pending(blobs: list[str]) -> set[str]:
    """Those of blobs that a writer has stored and not yet recorded."""
    from models_db.redis_store import places_taken
    return {blob for blob, taken in zip(blobs, places_taken([_pending_place(b) for b in blobs])) if taken}


@contextmanager
def holding():
    """Blobs stored in the block stay marked pending until it ends: put the writer's commit inside it."""
    from models_db.redis_store import give_back_place
    held: list = []
    reset = _held.set(held)
    try:
        yield
    finally:
        _held.reset(reset)
        for sha256, token in held:
            give_back_place(_pending_place(sha256), token)


class BlobStore:
    """Blobs are named by the lower-case hex SHA256 of their bytes, so equal files are stored once."""

    def put_stream(self, stream: BinaryIO) -> tuple[str, int]:
        """Store a stream, marked pending before its bytes go in; returns (sha256, size)."""
        with self.staging_file() as (tmp, path):
            sha, size = sha256_stream(stream, tmp)
            tmp.close()
            mark_pending(sha)
            self.put_staged(path, sha)
        return sha, size

    def put_path(self, path: str | os.PathLike) -> tuple[str, int]:
        with open(path, "rb") as stream:
            return self.put_stream(stream)

    @contextmanager
    def staging_file(self):
        """A temporary file beside the store, removed afterwards unless put_staged moved it."""
        staging = settings.get().home / "tmp"
        staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=staging, prefix="blob-")
        tmp = os.fdopen(fd, "wb")
        try:
            yield tmp, Path(name)
        finally:
            tmp.close()
            Path(name).unlink(missing_ok=True)

    # the rest is per backend
    def put_staged(self, path: Path, sha256: str) -> None: ...
    def exists(self, sha256: str) -> bool: ...
    def size(self, sha256: str) -> int: ...
    def open(self, sha256: str) -> BinaryIO: ...  # BlobMissing when absent
    def readable(self, sha256: str): ...  # what send_file takes (a local path, or an open stream); BlobMissing
    def local_path(self, sha256: str): ...  # BlobMissing when absent
    def delete(self, sha256: str) -> None: ...
    def iter_blobs(self): ...  # (sha256, modified unix time) for every blob
    def signed_url(self, sha256: str, filename: str, ttl: int) -> str | None: ...
    def check(self) -> str: ...


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path):
        self.root = root

    def path(self, sha256: str) -> Path:
        sha256 = sha256.lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a sha256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_staged(self, path: Path, sha256: str) -> None:
        target = self.path(sha256)
        if target.exists():
            os.utime(target)  # freshly referenced again: not an orphan candidate for a while
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o444)
        os.replace(path, target)

    def exists(self, sha256):
        return self.path(sha256).exists()

    def size(self, sha256):
        return self.path(sha256).stat().st_size

    def open(self, sha256):
        try:
            return open(self.path(sha256), "rb")
        except FileNotFoundError:
            raise BlobMissing(sha256) from None

    def readable(self, sha256):
        path = self.path(sha256)
        if not path.is_file():
            raise BlobMissing(sha256)
        return path

    @contextmanager
    def local_path(self, sha256) -> Iterator[Path]:
        yield self.readable(sha256)

    def delete(self, sha256):
        self.path(sha256).unlink(missing_ok=True)

    def iter_blobs(self):
        for path in self.root.glob("??/??/*"):
            if len(path.name) == 64 and not path.name.startswith("."):
                yield path.name, path.stat().st_mtime

    def signed_url(self, sha256, filename, ttl):
        return None  # served by the web app itself (web/downloads.py)

    def check(self):
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / f".probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        free = shutil.disk_usage(self.root).free
        return f"local {self.root} ({free >> 30} GiB free)"


class S3BlobStore(BlobStore):
    def __init__(self, url: str, endpoint_url: str | None):
        import boto3  # optional extra: pip install -e .[s3]
        parsed = urlparse(url)
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None)

    def key(self, sha256: str) -> str:
        return "/".join(p for p in (self.prefix, sha256[:2], sha256[2:4], sha256.lower()) if p)

    def put_staged(self, path, sha256):
        if not self.exists(sha256):
            self.client.upload_file(str(path), self.bucket, self.key(sha256))

    def exists(self, sha256):
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            return True
        except self.client.exceptions.ClientError:
            return False

    def size(self, sha256):
        return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))["ContentLength"]

    def open(self, sha256):
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"]
        except self.client.exceptions.NoSuchKey:
            raise BlobMissing(sha256) from None

    def readable(self, sha256):
        return self.open(sha256)

    @contextmanager
    def local_path(self, sha256):
        with self.staging_file() as (tmp, path):
            tmp.close()
            try:
                self.client.download_file(self.bucket, self.key(sha256), str(path))
            except self.client.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    raise BlobMissing(sha256) from None
                raise
            yield path

    def delete(self, sha256):
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))

    def iter_blobs(self):
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if len(name) == 64:
                    yield name, obj["LastModified"].timestamp()

    def signed_url(self, sha256, filename, ttl):
        return self.client.generate_presigned_url("get_object", ExpiresIn=ttl, Params={
            "Bucket": self.bucket, "Key": self.key(sha256),
            "ResponseContentDisposition": content_disposition(filename)})

    def check(self):
        self.client.head_bucket(Bucket=self.bucket)
        return f"s3://{self.bucket}/{self.prefix}"


def content_disposition(filename: str) -> str:
    """attachment; filename="x" plus RFC 5987 filename* for names that are not plain ASCII."""
    from urllib.parse import quote
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename)}"
    return value


_stores: dict = {}


def get_store() -> BlobStore:
    s = settings.get()
    key = (s.storage_url, s.s3_endpoint_url)
    if key not in _stores:
        parsed = urlparse(s.storage_url)
        if parsed.scheme == "file":
            _stores[key] = LocalBlobStore(Path(parsed.path))
        elif parsed.scheme == "s3":
            _stores[key] = S3BlobStore(s.storage_url, s.s3_endpoint_url)
        else:
            raise SystemExit(f"STORAGE_URL: unsupported scheme {parsed.scheme!r} (file:// or s3://)")
    return _stores[key]
