"""The subset of AUTOMATIC1111's /sdapi/v1 that clients (webuiapi, editors' plugins) use, mapped onto the
same queue as /api/v1/generation. A txt2img call waits for its run and answers as A1111 does."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from concurrent.futures import Executor
from dataclasses import dataclass

import orjson
from flask import Blueprint, abort, g, jsonify, make_response, request
from PIL import Image as PILImage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import settings

from gpu.request import RequestError, parse
from gpu.samplers import SAMPLERS
from jobs import generation as jobs
from models_db import generation as gen
from models_db.accounts import User, normal_username, user_for_key
from models_db.catalog import Model, ModelFile, ModelVersion
from models_db.catalog_queries import visible_versions
from models_db.quotas import QuotaExceeded
from models_db import db as database
from models_db.redis_store import client, give_back_place, redis_key, take_place
from models_db.storage import BlobMissing, get_store
from web import streams
from web.api import body_limit, current_api_user, log_missing_blob, retry_later
from web.handoff import give_back_place_soon, hand_off, private_loop, while_connected, without
from web.security import SAFE_METHODS, auth_attempt, auth_failed

bp = Blueprint("sdapi", __name__, url_prefix="/sdapi/v1")
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([-\d.]+))?[^>]*>")
SCHEDULE_TYPES = {"Karras": " Karras"}
TYPE_LISTS = {"loras": ("LORA", "LoCon", "DoRA"), "sd-vae": ("VAE",), "embeddings": ("TextualInversion",)}


class Options(BaseModel):
    """The options this API keeps (A1111 ignores keys it does not know; so do we). Typed as A1111 types them."""
    model_config = ConfigDict(extra="ignore")
    sd_model_checkpoint: str = Field(None, max_length=1000)  # absent: the first one in the catalog
    CLIP_stop_at_last_layers: int = Field(1, ge=1, le=12)
    sd_vae: str = Field("Automatic", max_length=1000)


class GenerationBody(BaseModel):
    """A txt2img/img2img body with the types A1111 gives them (its other fields are accepted and ignored).
    Ranges are the generation request's to check; scripts are refused, as A1111 refuses unknown ones."""
    model_config = ConfigDict(extra="ignore")
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = Field(None, max_length=100)
    sampler_index: str | None = Field(None, max_length=100)
    scheduler: str | None = Field(None, max_length=100)
    batch_size: int = Field(1, ge=1, le=1000)
    n_iter: int = Field(1, ge=1, le=1000)
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    enable_hr: bool = False
    hr_scale: float = Field(2.0, gt=1, le=4)  # bounded as the generation request bounds them, used or not
    hr_second_pass_steps: int = Field(0, ge=0, le=150)
    denoising_strength: float | None = Field(None, ge=0, le=1)
    override_settings: Options | None = None
    script_name: str | None = None
    script_args: list = []
    alwayson_scripts: dict[str, dict] = {}
    init_images: list[str] | None = None
    mask: str | None = None

    def refuse_scripts(self) -> None:
        for name in [self.script_name, *self.alwayson_scripts]:
            if name:
                raise ValueError(f"script {str(name)[:100]!r} not found")


def validated_body(model: type[BaseModel], body) -> BaseModel:
    """The JSON body as `model`, or 422 naming the first bad field, as FastAPI answers."""
    if not isinstance(body, dict):
        fail(422, "the body must be a JSON object")
    try:
        return model.model_validate(body, strict=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(422, f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}")


def problem(message: str) -> dict:
    """FastAPI's shape ({"detail": …}), which A1111 clients read, plus our {"error": …}."""
    return {"error": message, "detail": message}


def fail(status: int, message: str):
    abort(make_response(jsonify(problem(message)), status))


@bp.before_request
def authenticate() -> None:
    """Every route needs a user: an API key (Bearer or ?token=), HTTP basic auth as A1111's --api-auth
    (the username and one of its API keys as the password), or the browser session. Any write (every
    method but GET/HEAD) needs the 'write' scope."""
    user = current_api_user()
    auth = request.authorization
    if user is None and auth is not None and auth.type == "basic":
        user = basic_auth_user(auth.username, auth.password)
    if user is None:
        fail(401, "Not authenticated: send an API key (Bearer) or basic auth with an API key as the password")
    if request.method not in SAFE_METHODS and g.api_key is not None and not g.api_key.allows("write"):
        fail(403, "This API key lacks the 'write' scope")
    g.api_user = user


def basic_auth_user(username: str | None, password: str | None) -> User | None:
    auth_attempt()  # an API key cannot be guessed: a resting username rests only its wrong ones
    found = user_for_key(password or "")
    if found is None or found[0].username != normal_username(username):
        auth_attempt(username)
        auth_failed(username)
        return None
    g.api_key = found[1]
    return found[0]


def sdapi_user() -> User:
    """The user authenticate() found."""
    return g.api_user


# ---- catalog views -----------------------------------------------------------------------------------
def usable_files(model_types, user):
    """(file, version, model) rows of ready files that this user may generate with."""
    return (ModelFile.select(ModelFile, ModelVersion, Model).join(ModelVersion).join(Model)
            .where(Model.type.in_(model_types), ModelFile.status == "Ready", ModelFile.primary == True,  # noqa: E712
                   visible_versions(user.id)).order_by(ModelVersion.id.desc()).limit(1000))


def title(file: ModelFile) -> str:
    return f"{file.name} [{file.blob[:10]}]"


def checkpoint_entry(file: ModelFile) -> dict:
    return {"title": title(file), "model_name": file.name.rsplit(".", 1)[0], "hash": file.blob[:10],
            "sha256": file.blob, "filename": file.name, "config": None}


def options_key(user) -> str:
    return redis_key(f"sdapi:options:{user.id}")


def load_options(user) -> dict:
    stored = client().get(options_key(user))
    options = json.loads(stored) if stored else {}
    if not options.get("sd_model_checkpoint"):
        first = usable_files(("Checkpoint",), user).first()
        options["sd_model_checkpoint"] = title(first) if first else None
    options.setdefault("CLIP_stop_at_last_layers", 1)
    options.setdefault("sd_vae", "Automatic")
    return options


def checkpoint_ref(value: str | None, user):
    """A1111 checkpoint titles ("name.safetensors [hash10]"), names, hashes → a catalog reference."""
    if not value:
        fail(422, "no checkpoint is selected and none is in the catalog")
    match = re.search(r"\[([0-9a-fA-F]{8,64})\]\s*$", value)
    if match:
        return match.group(1)
    for file in usable_files(("Checkpoint",), user):
        if value in (file.name, file.name.rsplit(".", 1)[0]):
            return file.blob
    return value


def lora_resources(prompt: str, user) -> tuple[str, list[dict]]:
    """A1111's <lora:name:weight> prompt tags → catalog resources; the tags leave the prompt."""
    wanted = LORA_TAG.findall(prompt)
    if not wanted:
        return prompt, []
    by_name = {f.name.rsplit(".", 1)[0]: f.blob for f in usable_files(TYPE_LISTS["loras"], user)}
    resources = []
    for name, weight in wanted:
        if name not in by_name:
            fail(422, f"LoRA {name!r} is not in the catalog")
        resources.append({"id": by_name[name], "weight": float(weight or 1.0)})
    return LORA_TAG.sub("", prompt).strip(" ,"), resources


def to_request(body: GenerationBody, user, img2img: bool) -> dict:
    body.refuse_scripts()
    overrides = body.override_settings.model_dump(exclude_unset=True) if body.override_settings else {}
    options = {**load_options(user), **overrides}
    prompt, loras = lora_resources(body.prompt, user)
    sampler = (body.sampler_name or body.sampler_index or "Euler a") + SCHEDULE_TYPES.get(body.scheduler or "", "")
    req = {"model": checkpoint_ref(options.get("sd_model_checkpoint"), user), "prompt": prompt,
           "negative_prompt": body.negative_prompt, "seed": body.seed, "sampler": sampler, "steps": body.steps,
           "cfg_scale": body.cfg_scale, "width": body.width, "height": body.height, "resources": loras,
           "quantity": body.batch_size * body.n_iter, "clip_skip": int(options.get("CLIP_stop_at_last_layers") or 1)}
    if body.enable_hr and not img2img:
        req["hires"] = {"scale": body.hr_scale, "steps": body.hr_second_pass_steps,
                        "denoising_strength": 0.7 if body.denoising_strength is None else body.denoising_strength}
    if img2img:
        if not body.init_images:
            fail(422, "init_images: at least one image is required")
        req.update(init_image=body.init_images[0],
                   denoising_strength=0.75 if body.denoising_strength is None else body.denoising_strength)
        if body.mask:
            req["mask"] = body.mask
    return req


def generate(img2img: bool):
    """Validates and queues the run (committed), then waits for its end on the event loop (Wait), holding
    no request thread and no database connection."""
    user = sdapi_user()
    body = request.get_json(silent=True)
    fields = validated_body(GenerationBody, body)
    s, place = settings.get(), f"sdapi-waits:{user.id}"
    token = take_place(place, s.sdapi_max_waits, s.sdapi_wait_s + 60)
    if token is None:
        fail(429, f"at most {s.sdapi_max_waits} txt2img/img2img calls may wait at once; wait for one to answer")
    try:
        try:
            run = jobs.submit(user, parse(to_request(fields, user, img2img)), source="sdapi")
        except QuotaExceeded as exc:
            retry_later(exc.message, exc.retry_after, detail=exc.message)
        except (RequestError, ValueError, TypeError) as exc:
            fail(422, str(exc))
        client().set(redis_key(f"sdapi:current:{user.id}"), run.id, ex=s.sdapi_wait_s)
    except BaseException:
        give_back_place(place, token)
        raise
    wait = Wait(run.id, body, place, token)
    if hand_off(wait):  # web/asgi.py answers on its event loop
        return jsonify({})
    database.db.close()  # under a WSGI server: this thread waits, without its database connection
    try:
        with private_loop() as loop:
            loop.run_until_complete(wait.run_ends())
    finally:
        give_back_place(place, token)
    status, answer_json = outcome(run.id, body)
    return jsonify(answer_json), status


@dataclass(frozen=True)
class Wait:
    """An A1111 call waiting for its run: the run's end event, or SDAPI_WAIT_S, then the answer."""
    run_id: int
    body: dict
    place: str  # the user's SDAPI_MAX_WAITS places, and the one this call holds
    token: str

    async def run_ends(self) -> None:
        async for _ in streams.events(streams.RunFeed(self.run_id, -1), settings.get().sdapi_wait_s):
            pass

    async def serve(self, start: dict, receive, send, threads: Executor) -> None:
        try:
            if not await while_connected(receive, self.run_ends()):
                return  # the client went away; its run goes on
            status, answer_json = await asyncio.get_running_loop().run_in_executor(
                threads, outcome, self.run_id, self.body)
        finally:
            await give_back_place_soon(self.place, self.token)
        data = orjson.dumps(answer_json)
        headers = without(start["headers"], b"content-length", b"content-type")
        await send({"type": "http.response.start", "status": status, "headers": [
            *headers, (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def outcome(run_id: int, body: dict) -> tuple[int, dict]:
    """The answer to a call whose wait is over (status, JSON), read on a database connection of its own."""
    with database.db.connection_context():
        run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == run_id, gen.GenerationRun.deleted_at.is_null())
        if run is None:
            return 404, problem(f"generation run {run_id} was deleted")
        if run.status not in gen.RUN_FINISHED:
            return 504, problem(f"generation run {run.id} did not finish within {settings.get().sdapi_wait_s} s; "
                                "it goes on (GET /sdapi/v1/progress)")
        return answer(run, body)


def answer(run: gen.GenerationRun, body: dict) -> tuple[int, dict]:
    store, images, infotexts, jobs_done = get_store(), [], [], []
    for job in run.jobs.where(gen.GenerationJob.state == "done").order_by(gen.GenerationJob.index):
        try:
            with store.open(job.output_blob) as f:
                data = f.read()
        except BlobMissing:
            log_missing_blob(job.output_blob, f"image of generation job {job.id}")
            return 404, problem(f"the stored image of generation job {job.id} is missing")
        images.append(base64.b64encode(data).decode())
        infotexts.append(PILImage.open(io.BytesIO(data)).info.get("parameters", ""))
        jobs_done.append(job)
    if run.status != "Done" and not images:
        errors = [j.error for j in run.jobs if j.error]
        return 500 if run.status == "Failed" else 409, problem(
            errors[0] if errors else f"generation {run.status.lower()}")
    first = jobs_done[0] if jobs_done else None
    params = first.params if first else {}
    info = {"prompt": first.prompt if first else "", "all_prompts": [j.prompt for j in jobs_done],
            "negative_prompt": first.negative_prompt if first else "",
            "all_negative_prompts": [j.negative_prompt for j in jobs_done],
            "seed": first.seed if first else -1, "all_seeds": [j.seed for j in jobs_done],
            "subseed": -1, "all_subseeds": [-1] * len(jobs_done), "subseed_strength": 0,
            "width": params.get("width"), "height": params.get("height"), "sampler_name": params.get("sampler"),
            "cfg_scale": params.get("cfg_scale"), "steps": params.get("steps"), "batch_size": len(jobs_done),
            "restore_faces": False, "face_restoration_model": None,
            "sd_model_name": (params.get("model") or {}).get("name"),
            "sd_model_hash": (params.get("model") or {}).get("autov2"), "sd_vae_name": None, "sd_vae_hash": None,
            "seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": params.get("denoising_strength"),
            "extra_generation_params": {}, "index_of_first_image": 0, "infotexts": infotexts, "styles": [],
            "job_timestamp": run.created_at.strftime("%Y%m%d%H%M%S"), "clip_skip": params.get("clip_skip", 1),
            "is_using_inpainting_conditioning": False, "version": jobs.VERSION}
    return 200, {"images": images, "parameters": body, "info": json.dumps(info)}


# ---- endpoints ---------------------------------------------------------------------------------------
@bp.post("/txt2img")
@body_limit(lambda s: s.max_generation_request_bytes)
def txt2img():
    return generate(img2img=False)


@bp.post("/img2img")
@body_limit(lambda s: s.max_generation_request_bytes)
def img2img():
    return generate(img2img=True)


@bp.get("/progress")
def progress():
    user = sdapi_user()
    run_id = client().get(redis_key(f"sdapi:current:{user.id}"))
    run = gen.GenerationRun.get_or_none(gen.GenerationRun.id == int(run_id)) if run_id else None
    step = {k.decode(): v.decode() for k, v in client().hgetall(jobs.progress_key(user.id)).items()}
    active = run is not None and run.status in ("Queued", "Running")
    steps = int(step.get("steps", 0) or 0)
    fraction = 0.0
    if active and run.total:
        fraction = (run.done + run.failed + (int(step.get("step", 0)) / steps if steps else 0)) / run.total
    return jsonify({"progress": min(fraction, 1.0), "eta_relative": 0.0, "current_image": None, "textinfo": None,
                    "state": {"skipped": False, "interrupted": bool(run and run.cancelled),
                              "job": f"run {run.id}" if active else "", "job_count": run.total if active else 0,
                              "job_timestamp": run.created_at.strftime("%Y%m%d%H%M%S") if run else "0",
                              "job_no": (run.done + run.failed) if active else 0,
                              "sampling_step": int(step.get("step", 0) or 0) if active else 0,
                              "sampling_steps": steps if active else 0}})


@bp.post("/interrupt")
def interrupt():
    user = sdapi_user()
    for run in gen.GenerationRun.select().where(gen.GenerationRun.user == user, gen.GenerationRun.source == "sdapi",
                                                gen.GenerationRun.status.in_(("Queued", "Running"))):
        jobs.cancel(run)
    return jsonify({})


@bp.post("/skip")
def skip():
    sdapi_user()
    return jsonify({})


@bp.get("/sd-models")
def sd_models():
    return jsonify([checkpoint_entry(f) for f in usable_files(("Checkpoint",), sdapi_user())])


@bp.route("/options", methods=["GET", "POST"])
def options():
    user = sdapi_user()
    current = load_options(user)
    if request.method == "POST":
        body = validated_body(Options, request.get_json(silent=True)).model_dump(exclude_unset=True)
        if body.get("sd_model_checkpoint"):
            ref = checkpoint_ref(body["sd_model_checkpoint"], user)
            try:
                found = gen.primary_file(gen.resolve_version(ref, user))
            except gen.UnknownResource as exc:
                fail(422, str(exc))
            body["sd_model_checkpoint"] = title(found)
        current.update(body)
        client().set(options_key(user), json.dumps(current))
        return jsonify(None)
    return jsonify(current)


@bp.get("/samplers")
def samplers():
    return jsonify(SAMPLERS)


@bp.get("/schedulers")
def schedulers():
    return jsonify([{"name": "automatic", "label": "Automatic", "aliases": None, "default_rho": -1,
                     "need_inner_model": False},
                    {"name": "karras", "label": "Karras", "aliases": None, "default_rho": 7.0,
                     "need_inner_model": False}])


@bp.get("/loras")
def loras():
    return jsonify([{"name": f.name.rsplit(".", 1)[0], "alias": f.name.rsplit(".", 1)[0], "path": f.name,
                     "metadata": {}} for f in usable_files(TYPE_LISTS["loras"], sdapi_user())])


@bp.get("/sd-vae")
def sd_vae():
    return jsonify([{"model_name": f.name, "filename": f.name}
                    for f in usable_files(TYPE_LISTS["sd-vae"], sdapi_user())])


@bp.get("/upscalers")
def upscalers():
    sdapi_user()
    return jsonify([{"name": "Latent", "model_name": None, "model_path": None, "model_url": None, "scale": 2}])


@bp.get("/scripts")
def scripts():
    sdapi_user()
    return jsonify({"txt2img": [], "img2img": []})
