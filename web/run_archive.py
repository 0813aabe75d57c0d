"""A generation run as a zip, streamed with bounded memory: its PNGs (A1111 parameters inside), its XYZ
grids and run.json. What the archive holds is read from the database first, while the request holds its
connection; the body then only reads blobs, a chunk at a time."""
from __future__ import annotations

import json
import zipfile
from typing import Iterator

from models_db import generation as gen
from models_db.storage import get_store
from web.catalog import iso

CHUNK = 1 << 20


def image_name(index: int, seed: int) -> str:
    return f"{index:05d}-{seed}.png"


def run_files(run: gen.GenerationRun) -> list[tuple[str, bytes | str]]:
    """(name, bytes) for run.json first, then (name, blob address) for each image and grid, in order."""
    J = gen.GenerationJob
    rows = (J.select(J.index, J.seed, J.prompt, J.negative_prompt, J.cell_json, J.state, J.error, J.output_blob)
            .where(J.run == run.id).order_by(J.index).tuples())
    files, images, failed = [], [], []
    for index, seed, prompt, negative, cell, state, error, blob in rows:
        entry = {"index": index, "prompt": prompt, "negativePrompt": negative, "seed": seed,
                 "cell": json.loads(cell) if cell else None}
        if state == "done" and blob:
            files.append((image_name(index, seed), blob))
            images.append({"file": image_name(index, seed), **entry})
        elif state == "failed":
            failed.append({**entry, "error": error})
    grids = [(f"grid-{n}.png", blob) for n, blob in enumerate(json.loads(run.grid_blobs or "[]"))]
    described = {"id": run.id, "status": run.status, "source": run.source, "createdAt": iso(run.created_at),
                 "finishedAt": iso(run.finished_at), "total": run.total, "done": run.done, "failed": run.failed,
                 "request": run.request, "images": images, "failures": failed, "grids": [g for g, _ in grids]}
    return [("run.json", json.dumps(described, indent=1).encode()), *files, *grids]


class _Sink:
    """Where zipfile writes (a stream it cannot seek: it writes sizes after each member's data)."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(files: list[tuple[str, bytes | str]]) -> Iterator[bytes]:
    """The zip of files, a piece at a time (PNGs are compressed already: stored as they are). A blob gone
    from the store is left out."""
    sink = _Sink()
    store = get_store()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for name, content in files:
            if isinstance(content, bytes):
                archive.writestr(name, content)
                yield sink.take()
                continue
            if not store.exists(content):
                continue
            with store.open(content) as source, archive.open(name, "w") as member:
                while chunk := source.read(CHUNK):
                    member.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
