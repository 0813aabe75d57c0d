"""NSFW scoring throughput on CPU: the NudeNet detector as the check_nsfw actor runs it (batched,
from stored 450px variants) against one image at a time, in the same run.

    .venv/bin/python bench/nsfw.py [--images 96] [--batch 8] [--size 450]
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time

# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def images(count: int, size: int) -> list[bytes]:
    from tests.factories import picture
    out = []
    for seed in range(count):
        buf = io.BytesIO()
        picture(size, size * 3 // 4, seed=seed).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=450)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from gpu import nsfw
    payloads = images(args.images, args.size)
    nsfw.detect(payloads[:2])  # load the model once, outside the timings
    rows = []
    for label, run in (("one by one", lambda: [nsfw.detect([p], batch_size=1) for p in payloads]),
                       (f"batched ({args.batch})", lambda: nsfw.detect(payloads, batch_size=args.batch))):
        times = timed(run, args.repeat)
        rows.append((label, args.images / min(times), args.images / statistics.median(times)))
    print(f"NudeNet 320n on CPU, {args.images} JPEG images of {args.size}px, {args.repeat} runs each")
    print(f"{'mode':<16}{'best img/s':>12}{'median img/s':>14}")
    for label, best, median in rows:
        print(f"{label:<16}{best:>12.1f}{median:>14.1f}")
    print(f"batched / one-by-one: {rows[1][2] / rows[0][2]:.2f}x (medians)")


if __name__ == "__main__":
    main()
