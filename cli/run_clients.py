"""The two ways `atelier generate` reaches generation: Local (this install's database and Redis, as a named
user) and Remote (the REST API of an Atelier server, with an API key). Both give the same small interface:
submit, status, events, done jobs, an output's bytes, cancel."""
from __future__ import annotations

import json
import time
from typing import Iterator

import click

POLL = {"event": "poll"}


class Local:
    def __init__(self, user):
        from jobs import generation as jobs
        from models_db.redis_store import client
        self.user, self.jobs = user, jobs
        self.pubsub = client().pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(jobs.user_channel(user.id))  # before submitting: no step is missed

    def submit(self, body: dict) -> dict:
        from gpu.request import RequestError, parse
        try:
            run = self.jobs.submit(self.user, parse(body), source="cli")
        except RequestError as exc:
            raise click.ClickException(str(exc)) from None
        return {"id": run.id, "total": run.total}

    def _run(self, run_id: int):
        from models_db import generation as gen
        run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == run_id, gen.GenerationRun.deleted_at.is_null())
        if run is None or (run.user_id != self.user.id and not self.user.is_staff):
            raise click.ClickException(f"no generation run {run_id} of {self.user.username}")
        return run

    def status(self, run_id: int) -> dict:
        run = self._run(run_id)
        return {"id": run.id, "status": run.status, "total": run.total, "done": run.done, "failed": run.failed}

    def events(self, run_id: int) -> Iterator[dict]:
        """The run's events as they happen; POLL every 2 s without one."""
        if self._run(run_id).user_id != self.user.id:  # staff following another's run
            self.pubsub.subscribe(self.jobs.channel(run_id))
        while True:
            message = self.pubsub.get_message(timeout=2.0)
            event = json.loads(message["data"]) if message else POLL
            if event is POLL or event.get("run") == run_id:
                yield event

    def done_jobs(self, run_id: int) -> Iterator[tuple[int, int, int]]:
        """(job id, index, seed) of every done job, in order."""
        from models_db import generation as gen
        cursor = ""
        while True:
            rows, cursor = gen.jobs_page(run_id, 500, cursor, "done")
            yield from ((j.id, j.index, j.seed) for j in rows)
            if not cursor:
                return

    def image(self, job_id: int) -> bytes:
        from models_db import generation as gen
        from models_db.storage import get_store
        with get_store().open(gen.GenerationJob.get_by_id(job_id).output_blob) as f:
            return f.read()

    def cancel(self, run_id: int) -> None:
        self.jobs.cancel(self._run(run_id))

    def close(self) -> None:
        self.pubsub.close()


class Remote:
    def __init__(self, url: str, key: str):
        import requests
        self.base = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def _call(self, method: str, path: str, **kwargs):
        import requests
        try:
            response = self.session.request(method, self.base + path, timeout=(10, 120), **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(f"{self.base}: {exc}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
                message = f"{body['error']}" + (f" ({body['field']})" if body.get("field") else "")
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise click.ClickException(f"{method} {path}: {response.status_code} {message}")
        return response

    def submit(self, body: dict) -> dict:
        run = self._call("POST", "/api/v1/generation", json=body).json()
        return {"id": run["id"], "total": run["total"], "request": run.get("request")}

    def status(self, run_id: int) -> dict:
        return self._call("GET", f"/api/v1/generation/runs/{run_id}?limit=1").json()

    def events(self, run_id: int) -> Iterator[dict]:
        """The run's Server-Sent Events, reconnecting with Last-Event-ID; POLL when a connection ends."""
        import requests
        last = None
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with self.session.get(f"{self.base}/api/v1/generation/runs/{run_id}/events", headers=headers,
                                      stream=True, timeout=(10, 60)) as response:
                    if response.status_code == 204:  # nothing more: the run ended long ago
                        yield POLL
                        time.sleep(1)
                        continue
                    if response.status_code >= 400:
                        raise click.ClickException(f"events of run {run_id}: {response.status_code}")
                    kind, data = None, None
                    for line in response.iter_lines(decode_unicode=True):
                        if line.startswith("id: "):
                            last = int(line[4:])
                        elif line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            data = json.loads(line[6:])
                        elif not line and data is not None:
                            yield {**data, "event": kind or data.get("event")}
                            kind, data = None, None
            except requests.RequestException:
                time.sleep(1)
            yield POLL

    def done_jobs(self, run_id: int) -> Iterator[tuple[int, int, int]]:
        cursor = ""
        while True:
            page = self._call("GET", f"/api/v1/generation/runs/{run_id}",
                              params={"state": "done", "limit": 500, **({"cursor": cursor} if cursor else {})}).json()
            yield from ((j["id"], j["index"], j["seed"]) for j in page["jobs"])
            cursor = page["metadata"].get("nextCursor")
            if not cursor:
                return

    def image(self, job_id: int) -> bytes:
        return self._call("GET", f"/api/v1/generation/jobs/{job_id}/image.png").content

    def cancel(self, run_id: int) -> None:
        self._call("POST", f"/api/v1/generation/runs/{run_id}/cancel")

    def close(self) -> None:
        self.session.close()
