"""Generation throughput: a bulk run through the whole platform against a plain diffusers loop over the
same prompts and the same checkpoint file, measured one after the other in one run.

    .venv/bin/python bench/generation.py                       # CPU: real-size SD1.5, 256², 4 steps, 8 images
    .venv/bin/python bench/generation.py --images 16 --steps 4 --size 256
    .venv/bin/python bench/generation.py --family SDXL --size 1024 --steps 30 --images 32 --batches 1,4,8  # CUDA

Both sides use the same single-file checkpoint: a real-size architecture with random weights, written by
gpu.demo.write_checkpoint. Trained weights are not available here.

Platform side, as users run it:
- a temporary ATELIER_HOME, the embedded Redis and a SQLite file;
- `atelier import-model` of the file, then a real `atelier worker --gpu` process;
- jobs.generation.submit, the call POST /api/v1/generation makes;
- timed from the submit until the last PNG (with its parameters chunk) is stored and its job is marked done;
- a one-image warm-up run first, so model loading is outside the timing on both sides.

Plain side: diffusers' from_single_file of the same file with the shipped config, then a loop of
pipe(prompt, …) calls, each image saved as PNG. It runs at batch 1 and at every size in --batches; the
ratio is taken against the best one.

Dtype is fp32 on CPU and fp16 on CUDA, on both sides. The platform side uses the worker's GPU_* settings
(GPU_OPTIMIZATIONS, GPU_MAX_BATCH). Printed: images/s of each and platform time / plain time. The CPU target
is ≤ 1.05× plain-diffusers time.
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)
# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = ROOT

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

BIN = Path(sys.executable).parent
PROMPTS = ["a lighthouse at dusk, dramatic sky", "a red fox in the snow", "portrait of an old sailor",
           "a bowl of lemons on a table", "cyberpunk street in the rain", "a castle on a hill, oil painting",
           "macro photo of a dragonfly", "a cozy reading nook"]


def prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] + (f", variation {i // len(PROMPTS)}" if i >= len(PROMPTS) else "")
            for i in range(n)]


def setup(home: Path) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "STORAGE_URL", "METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        os.environ.pop(name, None)
    os.environ.update(ATELIER_HOME=str(home), SECRET_KEY="bench", LOG_LEVEL="WARNING", HF_HUB_OFFLINE="1",
                      QUEUE_NAMESPACE=f"atelier-bench-gen-{os.getpid()}")


def plain_diffusers(path: Path, family: str, texts: list[str], args, batch: int, out: Path) -> float:
    """Seconds for a plain diffusers loop over texts at this batch size (pipeline loaded and warmed first)."""
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from gpu import configs
    from gpu.pipelines.loading import config_for, read_header
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    cls = StableDiffusionXLPipeline if family == "SDXL" else StableDiffusionPipeline
    shapes, metadata = read_header(path)
    config = str(configs.prepared_dir(config_for(shapes, metadata, family)))
    extra = {} if family == "SDXL" else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_single_file(str(path), config=config, torch_dtype=dtype, local_files_only=True, **extra).to(device)
    pipe.set_progress_bar_config(disable=True)
    kw = dict(num_inference_steps=args.steps, guidance_scale=7.0, width=args.size, height=args.size)
    pipe(texts[:1], **kw)  # warm-up
    sync(device)
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        generators = [torch.Generator("cpu").manual_seed(start + i) for i in range(len(chunk))]
        for i, image in enumerate(pipe(chunk, generator=generators, **kw).images):
            image.save(out / f"plain-{batch}-{start + i}.png")
    sync(device)
    seconds = time.perf_counter() - started
    del pipe
    return seconds


def sync(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def platform(path: Path, texts: list[str], args, home: Path) -> tuple[float, dict]:
    """Seconds from submit to the last stored image of a run of texts, through a real GPU worker process."""
    from cli.catalog import import_file
    from gpu.request import parse
    from jobs import generation as jobs
    from models_db import generation as gen
    from models_db.accounts import User
    from models_db.migrations import upgrade
    upgrade()
    summary = import_file(path, publish=True)
    user = User.get(User.username == "admin")
    log = open(home / "worker.log", "ab")
    worker = subprocess.Popen([str(BIN / "atelier"), "worker", "--gpu"], cwd=ROOT, env=dict(os.environ),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    body = {"model": summary["versionId"], "steps": args.steps, "width": args.size, "height": args.size,
            "cfg_scale": 7.0, "sampler": "Euler" if args.family == "SDXL" else "PLMS"}  # each pipeline's default
    try:
        warm = jobs.submit(user, parse({**body, "prompt": texts[0], "seed": 0}), source="cli")
        wait(gen, warm.id, worker, home, timeout=1800)
        started = time.perf_counter()
        run = jobs.submit(user, parse({**body, "prompts": texts, "seed": 0}), source="cli")
        run = wait(gen, run.id, worker, home, timeout=36000)
        seconds = time.perf_counter() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    batches = [json.loads(e)["batch"] for e in jobs.client().lrange(jobs.run_log_key(run.id), 0, -1)
               if json.loads(e)["event"] == "started"]
    return seconds, {"status": run.status, "done": run.done, "batches": batches}


def wait(gen, run_id: int, worker, home: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = gen.GenerationRun.get_by_id(run_id)
        if run.status in ("Done", "Failed", "Cancelled"):
            if run.status != "Done":
                raise SystemExit(f"run {run_id} ended {run.status}: "
                                 f"{[j.error for j in run.jobs if j.error][:1]}\n"
                                 f"{(home / 'worker.log').read_text()[-3000:]}")
            return run
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited:\n{(home / 'worker.log').read_text()[-3000:]}")
        time.sleep(0.05)
    raise SystemExit(f"run {run_id} did not finish in {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=("SD1", "SDXL"), default="SD1")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batches", default="1", help="plain diffusers batch sizes to try, e.g. 1,4,8")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (images, logs)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="atelier-bench-gen-"))
    setup(home)
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        from gpu.demo import write_checkpoint
        t = time.perf_counter()
        path = write_checkpoint(args.family, home / f"bench-{args.family.lower()}.safetensors", size="full")
        print(f"wrote a real-size {args.family} checkpoint with random weights "
              f"({path.stat().st_size / 2**30:.2f} GiB, {time.perf_counter() - t:.0f} s)")
        texts = prompts(args.images)
        out = home / "plain"
        out.mkdir()
        plain = {int(b): plain_diffusers(path, args.family, texts, args, int(b), out) for b in args.batches.split(",")}
        for batch, seconds in plain.items():
            print(f"plain diffusers, batch {batch:>2}: {len(texts) / seconds:7.3f} images/s ({seconds:.1f} s)")
        seconds, info = platform(path, texts, args, home)
        print(f"Atelier platform:         {len(texts) / seconds:7.3f} images/s ({seconds:.1f} s; "
              f"worker batches {info['batches']})")
        best_batch = min(plain, key=plain.get)
        print(f"{args.family} {args.size}x{args.size}, {args.steps} steps, {len(texts)} images, "
              f"{'cuda' if torch.cuda.is_available() else 'cpu'}:")
        print(f"  platform time / plain diffusers batch 1 time: {seconds / plain[1]:.3f}x" if 1 in plain else "")
        print(f"  platform time / plain diffusers best batch ({best_batch}) time: {seconds / plain[best_batch]:.3f}x")
        print(f"  speed vs best plain batch: {plain[best_batch] / seconds:.2f}x")
    finally:
        if not args.keep:
            from models_db.redis_store import stop_embedded
            stop_embedded()
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"kept {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
