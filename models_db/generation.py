"""Generation runs and their jobs (one job = one image), claimed in batches by GPU workers."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from peewee import (
    BigIntegerField,
    BooleanField,
    Case,
    CharField,
    DateTimeField,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    SqliteDatabase,
    TextField,
    chunked,
    fn,
)

from models_db.accounts import User
from models_db.catalog import ModelVersion
from models_db.db import BaseModel, db, id_set, utcnow
from models_db.ids import parse_id
from models_db.images import Image

RUN_STATES = ("Queued", "Running", "Done", "Failed", "Cancelled")
RUN_FINISHED = RUN_STATES[2:]
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 3  # claims of a job; a queued job claimed this often is failed by its own message


class GenerationRun(BaseModel):
    user = ForeignKeyField(User, backref="generation_runs", on_delete="CASCADE")
    source = CharField(max_length=16, default="api")  # api | sdapi | cli | web
    request_json = TextField()
    status = CharField(max_length=16, default="Queued", index=True)
    total = IntegerField(default=0)
    done = IntegerField(default=0)
    failed = IntegerField(default=0)
    cancelled = BooleanField(default=False)
    grid_json = TextField(null=True)  # the XYZ axes and labels, for the assembled grid
    grid_blobs = TextField(null=True)  # JSON list of grid image blobs (one per z)
    created_at = DateTimeField(default=utcnow, index=True)
    finished_at = DateTimeField(null=True)
    deleted_at = DateTimeField(null=True)  # deleted by its owner: hidden now, removed by a worker (delete_runs)

    @property
    def request(self) -> dict:
        return json.loads(self.request_json)


class GenerationParams(BaseModel):
    """What a batch shares (gpu.pipelines.Params + the model), once per distinct set in a run: its jobs
    find it by their signature instead of each carrying a copy."""
    run = ForeignKeyField(GenerationRun, backref="param_sets", on_delete="CASCADE")
    signature = CharField(max_length=64)
    params_json = TextField()
    cost = DoubleField(default=0.0)  # of one image (models_db.quotas.params_cost), summed for the daily budget

    class Meta:
        indexes = ((("run", "signature"), True),)


class GenerationJob(BaseModel):
    run = ForeignKeyField(GenerationRun, backref="jobs", on_delete="CASCADE")
    index = IntegerField()
    model_version = ForeignKeyField(ModelVersion, null=True, on_delete="SET NULL")
    signature = CharField(max_length=64, index=True)  # jobs with equal signatures share one batch
    prompt = TextField()
    negative_prompt = TextField(default="")
    seed = BigIntegerField()  # A1111 seeds go up to 2**32 - 1
    inputs_json = TextField(default="{}")  # blobs of init image / mask / control image
    cell_json = TextField(null=True)  # [x, y, z] in an XYZ grid
    state = CharField(max_length=16, default="queued")
    claimed_by = CharField(max_length=32, null=True)
    heartbeat_at = DateTimeField(null=True)
    attempts = IntegerField(default=0)
    error = TextField(null=True)
    image = ForeignKeyField(Image, null=True, on_delete="SET NULL")
    output_blob = CharField(max_length=64, null=True)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("run", "index"), True), (("signature", "state", "id"), False), (("state", "run"), False))

    @property
    def params(self) -> dict:
        return json.loads(GenerationParams.get(GenerationParams.run == self.run_id,
                                               GenerationParams.signature == self.signature).params_json)

    @property
    def inputs(self) -> dict:
        return json.loads(self.inputs_json)


TABLES = [GenerationRun, GenerationParams, GenerationJob]


def signature(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def abandoned(lease_s: float):
    """Running jobs whose worker stopped sending heartbeats (it died)."""
    stale = utcnow() - timedelta(seconds=lease_s)
    return (GenerationJob.state == "running") & (GenerationJob.heartbeat_at < stale)


def claimable(lease_s: float):
    """Queued jobs, and abandoned ones."""
    return (GenerationJob.state == "queued") | abandoned(lease_s)


def spent():
    """Queued jobs claimed MAX_ATTEMPTS times: only their own message takes them (to fail them)."""
    return (GenerationJob.state == "queued") & (GenerationJob.attempts >= MAX_ATTEMPTS)


def claim(job_ids, token: str, lease_s: float) -> list[int]:
    """Atomically takes what is still claimable of job_ids for this batch; returns the ids it got."""
    now = utcnow()
    (GenerationJob.update(state="running", claimed_by=token, heartbeat_at=now, started_at=now,
                          attempts=GenerationJob.attempts + 1)
     .where(GenerationJob.id.in_(id_set(job_ids)), claimable(lease_s)).execute())
    return [j for (j,) in GenerationJob.select(GenerationJob.id)
            .where(GenerationJob.id.in_(id_set(job_ids)), GenerationJob.claimed_by == token,
                   GenerationJob.state == "running").order_by(GenerationJob.id).tuples()]


def heartbeat(job_ids, token: str) -> None:
    GenerationJob.update(heartbeat_at=utcnow()).where(
        GenerationJob.id.in_(id_set(job_ids)), GenerationJob.claimed_by == token).execute()


def release(job_ids, token: str) -> list[int]:
    """Puts claimed jobs back in the queue (their batch stopped for another run's cancel)."""
    ids = [j for (j,) in GenerationJob.select(GenerationJob.id).where(
        GenerationJob.id.in_(id_set(job_ids)), GenerationJob.claimed_by == token,
        GenerationJob.state == "running").tuples()]
    GenerationJob.update(state="queued", claimed_by=None, heartbeat_at=None).where(
        GenerationJob.id.in_(id_set(ids))).execute()
    return ids


def refresh_run(run_id: int) -> GenerationRun:
    """Recounts a run's jobs and derives its status. On PostgreSQL the run's row is locked first, so that
    jobs finishing at once in other transactions are counted after those commit (two finishers would each
    count the other's job still running); SQLite's transaction() holds the write lock already."""
    if not isinstance(db.obj, SqliteDatabase):
        list(GenerationRun.select(GenerationRun.id).where(GenerationRun.id == run_id).for_update())
    counts = dict(GenerationJob.select(GenerationJob.state, fn.COUNT(GenerationJob.id))
                  .where(GenerationJob.run == run_id).group_by(GenerationJob.state).tuples())
    run = GenerationRun.get_by_id(run_id)
    run.done, run.failed = counts.get("done", 0), counts.get("failed", 0)
    open_jobs = counts.get("queued", 0) + counts.get("running", 0)
    if run.cancelled:
        status = "Cancelled"
    elif open_jobs:
        status = "Running" if (counts.get("running") or run.done or run.failed) else "Queued"
    else:
        status = "Failed" if run.failed else "Done"
    if status != run.status or status in RUN_FINISHED:
        run.status = status
        if status not in RUN_FINISHED:
            run.finished_at = None  # reopened by an operator's retry
        elif run.finished_at is None:
            run.finished_at = utcnow()
    # only what it derived: a cancel or a deletion saved meanwhile by another process stays
    run.save(only=[GenerationRun.done, GenerationRun.failed, GenerationRun.status, GenerationRun.finished_at])
    return run


def cancel_run(run: GenerationRun) -> list[int]:
    """Marks the run cancelled and drops its queued jobs; returns the ids of its running jobs."""
    run.cancelled = True
    run.save(only=[GenerationRun.cancelled])
    now = utcnow()
    GenerationJob.update(state="cancelled", finished_at=now).where(
        GenerationJob.run == run, GenerationJob.state == "queued").execute()
    running = [j for (j,) in GenerationJob.select(GenerationJob.id).where(
        GenerationJob.run == run, GenerationJob.state == "running").tuples()]
    refresh_run(run.id)
    return running


def reopen_failed(job_id: int) -> int | None:
    """A failed job of a run not cancelled back in the queue, with a fresh attempt budget and no error, and
    its run recounted; returns the run's id, or None when the job is not failed (any more)."""
    live_runs = GenerationRun.select(GenerationRun.id).where(GenerationRun.cancelled == False,  # noqa: E712
                                                             GenerationRun.deleted_at.is_null())
    reopened = (GenerationJob.update(state="queued", error=None, finished_at=None, claimed_by=None,
                                     heartbeat_at=None, attempts=0)
                .where(GenerationJob.id == job_id, GenerationJob.state == "failed", GenerationJob.run.in_(live_runs))
                .execute())
    if not reopened:
        return None
    run_id = GenerationJob.get_by_id(job_id).run_id
    refresh_run(run_id)
    return run_id


def runs_of_jobs(job_ids) -> dict[int, int]:
    """job id -> run id, for the jobs that exist."""
    return dict(GenerationJob.select(GenerationJob.id, GenerationJob.run)
                .where(GenerationJob.id.in_(id_set(job_ids))).tuples())


def stale_running(lease_s: float) -> list[int]:
    return [j for (j,) in GenerationJob.select(GenerationJob.id).where(abandoned(lease_s)).tuples()]


def queue_by_user(limit: int = 20) -> list[dict]:
    """The users with queued or running jobs, most open jobs first (at most `limit` users): {"user",
    "username", "queued", "running", "runs"}. Reads only the open runs' jobs (runs by their status index)."""
    state = GenerationJob.state
    queued = fn.SUM(Case(None, [(state == "queued", 1)], 0))
    running = fn.SUM(Case(None, [(state == "running", 1)], 0))
    rows = (GenerationJob.select(GenerationRun.user, User.username, queued, running,
                                 fn.COUNT(GenerationRun.id.distinct()))
            .join(GenerationRun).join(User)
            .where(GenerationRun.status.in_(RUN_STATES[:2]), state.in_(("queued", "running")))
            .group_by(GenerationRun.user, User.username)
            .order_by((queued + running).desc(), GenerationRun.user)
            .limit(max(1, limit)).tuples())
    return [{"user": user, "username": username, "queued": int(q), "running": int(r), "runs": runs}
            for user, username, q, r, runs in rows]


# ---- resolving catalog references ---------------------------------------------------------------
RESOURCE_KINDS = {"LORA": "lora", "LoCon": "lora", "DoRA": "lora", "TextualInversion": "embedding",
                  "VAE": "vae", "Controlnet": "controlnet", "Checkpoint": "checkpoint", "Wildcards": "wildcards"}
FLUX_VARIANTS = {"Flux.1 S": "schnell", "Flux.1 D": "dev"}


class UnknownResource(LookupError):
    pass


def resolve_version(ref, viewer) -> ModelVersion:
    """A version by id, AIR (urn:air:…:civitai:MODEL[@VERSION]) or file hash, if the viewer may use it."""
    from models_db.catalog import BadAir, parse_air, visible_to
    from models_db.catalog_queries import version_ids_by_hash
    text = str(ref).strip()
    version = None
    if isinstance(ref, int) or (text.isascii() and text.isdigit()):
        version_id = parse_id(ref) if not isinstance(ref, bool) else None
        version = ModelVersion.get_or_none(ModelVersion.id == version_id) if version_id else None
    elif text.startswith("urn:air:"):
        try:
            parsed = parse_air(text)
        except BadAir as exc:
            raise UnknownResource(str(exc)) from None
        if parsed.version_id:
            version = ModelVersion.get_or_none(ModelVersion.id == parsed.version_id,
                                               ModelVersion.model == parsed.model_id)
        else:
            version = (ModelVersion.select().where(ModelVersion.model == parsed.model_id)
                       .order_by((ModelVersion.status == "Published").desc(), ModelVersion.id.desc()).first())
    else:
        ids = version_ids_by_hash([text], viewer.id if viewer else None, getattr(viewer, "is_staff", False))
        version = ModelVersion.get_or_none(ModelVersion.id == ids[0]) if ids else None
    if version is not None and visible_to(version, viewer):
        return version
    raise UnknownResource(f"no usable model version for {text!r}")


def primary_file(version: ModelVersion):
    from models_db.catalog import ModelFile
    file = (ModelFile.select().where(ModelFile.version == version)
            .order_by(ModelFile.primary.desc(), ModelFile.id).first())
    if file is None or not file.downloadable:
        raise UnknownResource(f"version {version.id} has no ready, scanned file")
    return file


def describe(version: ModelVersion) -> dict:
    """What a job needs to know of a catalog version to load it on a GPU worker."""
    from models_db.catalog import Model, ecosystem
    model = Model.get_by_id(version.model_id)
    file = primary_file(version)
    return {"version_id": version.id, "type": model.type, "kind": RESOURCE_KINDS.get(model.type, "other"),
            "name": file.name.rsplit(".", 1)[0], "file": file.name, "blob": file.blob,
            "family": file.architecture, "base_model": version.base_model, "format": file.format,
            "variant": FLUX_VARIANTS.get(version.base_model), "autov2": file.blob[:10],
            "ecosystem": ecosystem(version.base_model)}


def compatible(resource_ecosystem: str, model_ecosystem: str) -> bool:
    """A LoRA/embedding/ControlNet fits a checkpoint of its own ecosystem (SDXL and its derivatives agree)."""
    families = {"pony": "sdxl"}
    return "other" in (resource_ecosystem, model_ecosystem) or \
        families.get(resource_ecosystem, resource_ecosystem) == families.get(model_ecosystem, model_ecosystem)


def wildcard_lines(version: ModelVersion) -> dict[str, list[str]]:
    """name -> lines of each .txt file (also inside .zip files) of a Wildcards version."""
    import io
    import zipfile

    from gpu.prompts import parse_wildcard_file
    from models_db.catalog import ModelFile
    from models_db.storage import get_store
    out = {}
    for file in ModelFile.select().where(ModelFile.version == version, ModelFile.status == "Ready"):
        with get_store().open(file.blob) as f:
            data = f.read()
        if file.name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for name in z.namelist():
                    if name.endswith(".txt"):
                        out[name.rsplit("/", 1)[-1][:-4]] = parse_wildcard_file(z.read(name).decode("utf-8", "replace"))
        elif file.name.endswith(".txt"):
            out[file.name[:-4]] = parse_wildcard_file(data.decode("utf-8", "replace"))
    return out


# ---- creating runs ---------------------------------------------------------------------------------
def _decode_image(field: str, data: str) -> str:
    """Stores a base64 (or data: URL) image input; returns its blob."""
    import base64
    import binascii
    import io

    from gpu.image_files import InvalidImage, open_checked
    from gpu.request import RequestError
    from models_db.storage import get_store
    try:
        raw = base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data, validate=True)
        open_checked(raw)
    except (binascii.Error, ValueError) as exc:
        reason = str(exc) if isinstance(exc, InvalidImage) else "not base64 data"
        raise RequestError(field, f"not a usable image: {reason}") from None
    return get_store().put_stream(io.BytesIO(raw))[0]


def tensor_shapes(described: dict) -> dict | None:
    """A catalog safetensors file's tensor shapes, from its header (the first bytes of its blob); None for
    other formats."""
    import contextlib

    from gpu.checkpoints import header_shapes
    from models_db.storage import get_store
    if described.get("format") != "SafeTensor":
        return None
    with contextlib.closing(get_store().open(described["blob"])) as stream:
        return header_shapes(stream)


def _gpu_params(fields: dict, lookup, shapes_of) -> dict:
    """The batch-shared part of a job: gpu.pipelines.Params fields with catalog files described. LoRAs,
    embeddings and ControlNets must fit the checkpoint: its ecosystem, and their tensor shapes where headers
    show them."""
    from gpu.architectures import misfit
    from gpu.request import RequestError
    model = lookup(fields["model"])
    params = {"model": model, "vae": None, "loras": [], "embeddings": [], "controlnet": None,
              "control_scale": 1.0, "mode": "inpaint" if fields.get("mask") else "img2img" if fields.get(
                  "init_image") else "txt2img"}
    for key in ("width", "height", "steps", "cfg_scale", "sampler", "clip_skip", "denoising_strength"):
        params[key] = fields[key]
    hires = fields.get("hires")
    params["hires_scale"], params["hires_steps"] = (hires["scale"], hires["steps"]) if hires else (None, 0)
    if hires:
        params["denoising_strength"] = hires["denoising_strength"] if params["mode"] == "txt2img" \
            else params["denoising_strength"]
    wanted = [(r["ref"], r["weight"], "resources") for r in fields.get("resources") or []]
    if fields.get("vae") is not None:
        wanted.append((fields["vae"], 1.0, "vae"))
    if fields.get("controlnet"):
        wanted.append((fields["controlnet"]["model"], fields["controlnet"]["scale"], "controlnet"))
    for ref, weight, field in wanted:
        res = lookup(ref, field=field, kinds=("lora", "embedding", "vae", "controlnet"))
        if res["kind"] != "vae" and not compatible(res["ecosystem"], model["ecosystem"]):
            raise RequestError(field, f"{res['name']} is for {res['base_model']}, the model is {model['base_model']}")
        problem = misfit(res["kind"], shapes_of(res) or {}, shapes_of(model) or {}) if res["kind"] != "vae" else None
        if problem:
            raise RequestError(field, f"{res['name']} does not fit {model['name']}: {problem}")
        res = dict(res, weight=weight)
        if res["kind"] in ("vae", "controlnet"):
            params[res["kind"]] = res
            params["control_scale"] = weight if res["kind"] == "controlnet" else params["control_scale"]
        else:
            params[res["kind"] + "s"].append(res)
    return params


def check_quota(user, specs: list[dict]) -> None:
    """The user's limits (models_db.quotas) against the planned images, before anything is stored."""
    from models_db.quotas import check, image_cost
    costs: dict = {}
    for spec in specs:
        fields = spec["params"]
        if id(fields) not in costs:
            hires = fields.get("hires") or {}
            costs[id(fields)] = image_cost(fields["width"], fields["height"], fields["steps"], hires.get("scale"),
                                           hires.get("steps") or 0)
    check(user, len(specs), sum(costs[id(spec["params"])] for spec in specs))


def create_run(user, req, source: str = "api") -> tuple[GenerationRun, list[int]]:
    """Validates against the catalog, plans one job per image and stores the run. Call inside a
    transaction; raises gpu.request.RequestError for anything the caller must fix."""
    from gpu.request import RequestError, Resolver, plan
    from models_db.quotas import params_cost
    described: dict = {}

    def lookup(ref, field="model", kinds=("checkpoint",)):
        key = str(ref)
        if key not in described:
            try:
                described[key] = describe(resolve_version(ref, user))
            except UnknownResource as exc:
                raise RequestError(field, str(exc)) from None
        found = described[key]
        if found["kind"] not in kinds:
            raise RequestError(field, f"{found['name']} is a {found['type']}, not a {' or '.join(kinds)}")
        if found["kind"] == "checkpoint" and found["family"] not in ("SD1", "SD2", "SDXL", "FLUX1"):
            raise RequestError(field, f"{found['name']}: unsupported architecture {found['family']}")
        return found

    wildcards: dict = {}
    for ref in req.wildcards:
        try:
            version = resolve_version(ref, user)
        except UnknownResource as exc:
            raise RequestError("wildcards", str(exc)) from None
        wildcards.update(wildcard_lines(version))
    resolver = Resolver(family_of=lambda ref: (lookup(ref)["family"], lookup(ref)["variant"]), wildcards=wildcards)
    specs = plan(req, resolver)
    if not specs:
        raise RequestError("prompts" if req.prompts is not None else "body", "the request makes no images")
    check_quota(user, specs)
    inputs = {name: _decode_image(field, getattr(req, field)) for name, field in
              (("init_image", "init_image"), ("mask", "mask")) if getattr(req, field)}
    if req.controlnet:
        inputs["control_image"] = _decode_image("controlnet.image", req.controlnet.image)
    grid = None
    if req.grid is not None:
        grid = json.dumps({axis: getattr(req.grid, axis).model_dump() for axis in ("x", "y", "z")
                           if getattr(req.grid, axis) is not None})
    run = GenerationRun.create(user=user, source=source, request_json=req.model_dump_json(exclude_none=True),
                               total=len(specs), grid_json=grid)
    shapes: dict = {}

    def shapes_of(described: dict) -> dict | None:
        if described["blob"] not in shapes:
            shapes[described["blob"]] = tensor_shapes(described)
        return shapes[described["blob"]]

    rows, param_sets, per_cell = [], {}, {}
    inputs_json = json.dumps(inputs)
    for index, spec in enumerate(specs):
        key = id(spec["params"])  # a grid cell's jobs share its fields
        if key not in per_cell:
            params = _gpu_params(spec["params"], lookup, shapes_of)
            per_cell[key] = (signature(params), params["model"]["version_id"])
            param_sets.setdefault(per_cell[key][0], (json.dumps(params, sort_keys=True), params_cost(params)))
        sig, version_id = per_cell[key]
        rows.append({"run": run.id, "index": index, "model_version": version_id, "signature": sig,
                     "prompt": spec["prompt"], "negative_prompt": spec["negative_prompt"], "seed": spec["seed"],
                     "inputs_json": inputs_json, "cell_json": json.dumps(spec["cell"]) if spec["cell"] else None})
    if param_sets:
        GenerationParams.insert_many([{"run": run.id, "signature": sig, "params_json": text, "cost": cost}
                                      for sig, (text, cost) in param_sets.items()]).execute()
    for batch in chunked(rows, 500):
        GenerationJob.insert_many(batch).execute()
    ids = [j for (j,) in GenerationJob.select(GenerationJob.id).where(GenerationJob.run == run)
           .order_by(GenerationJob.index).tuples()]
    return run, ids


# ---- paging runs and jobs ---------------------------------------------------------------------------
def runs_page(user_id: int, limit: int, cursor: str = "") -> tuple[list[GenerationRun], str | None]:
    """The user's runs, newest first, after the cursor; and the next page's cursor (None: last page)."""
    from models_db.cursors import decode_keyset, encode_keyset
    query = GenerationRun.select().where(GenerationRun.user == user_id, GenerationRun.deleted_at.is_null())
    if cursor:
        query = query.where(GenerationRun.id < decode_keyset(cursor, dated=False)[1])
    rows = list(query.order_by(GenerationRun.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    return rows[:limit], encode_keyset(rows[limit - 1].id, rows[limit - 1].id) if more else None


def jobs_page(run_id: int, limit: int, cursor: str = "", state: str | None = None
              ) -> tuple[list[GenerationJob], str | None]:
    """A run's jobs in their order (only those in `state` if given), after the cursor; and the next cursor."""
    from models_db.cursors import BadCursor, decode_keyset, encode_keyset
    query = GenerationJob.select().where(GenerationJob.run == run_id)
    if state:
        query = query.where(GenerationJob.state == state)
    if cursor:
        after = decode_keyset(cursor, dated=False)[0]
        if after is None:
            raise BadCursor()
        query = query.where(GenerationJob.index > after)
    rows = list(query.order_by(GenerationJob.index).limit(limit + 1))
    more = len(rows) > limit
    return rows[:limit], encode_keyset(rows[limit - 1].index, rows[limit - 1].id) if more else None


# ---- deleting runs ----------------------------------------------------------------------------------
def mark_deleted(query) -> list[int]:
    """Hides the runs of a GenerationRun query (not yet deleted) at once; returns their ids, for delete_runs."""
    ids = [r for (r,) in query.where(GenerationRun.deleted_at.is_null()).select(GenerationRun.id).tuples()]
    for chunk in chunked(ids, 500):
        GenerationRun.update(deleted_at=utcnow()).where(GenerationRun.id.in_(chunk)).execute()
    return ids


def private_outputs(run_id: int):
    """The Image ids of a run's outputs that go with it: those its owner has not posted (still private)."""
    return (GenerationJob.select(GenerationJob.image).join(Image, on=(GenerationJob.image == Image.id))
            .where(GenerationJob.run == run_id, Image.private == True))  # noqa: E712


def delete_run(run_id: int) -> set[str]:
    """Deletes a run marked deleted, its jobs and its private outputs' images (call in a transaction);
    returns every blob those rows named, for removing the ones nothing else names (blob_references)."""
    from models_db.images import ImageVariant, refresh_version_levels
    run = GenerationRun.get_or_none(GenerationRun.id == run_id, GenerationRun.deleted_at.is_null(False))
    if run is None:
        return set()
    if not isinstance(db.obj, SqliteDatabase):  # an output stored meanwhile commits first, and is seen below
        list(GenerationJob.select(GenerationJob.id).where(GenerationJob.run == run_id).for_update())
    blobs = set(json.loads(run.grid_blobs or "[]"))
    jobs = GenerationJob.select(GenerationJob.output_blob, GenerationJob.inputs_json).where(GenerationJob.run == run_id)
    for output, inputs in jobs.tuples():
        blobs.update([output] if output else [])
        blobs.update(json.loads(inputs).values())
    image_ids = [i for (i,) in private_outputs(run_id).tuples()]
    versions = set()
    for chunk in chunked(image_ids, 500):
        images = Image.select(Image.blob, Image.model_version).where(Image.id.in_(chunk))
        for blob, version in images.tuples():
            blobs.update([blob] if blob else [])
            versions.add(version)
        blobs.update(b for (b,) in ImageVariant.select(ImageVariant.blob).where(ImageVariant.image.in_(chunk)).tuples())
    GenerationJob.delete().where(GenerationJob.run == run_id).execute()
    GenerationParams.delete().where(GenerationParams.run == run_id).execute()
    run.delete_instance()
    for chunk in chunked(image_ids, 500):
        Image.delete().where(Image.id.in_(chunk)).execute()
    refresh_version_levels(versions - {None})
    return blobs
