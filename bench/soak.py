"""Kill-test soak: repeats the SIGKILLed-worker test N times and prints lost / duplicated counts.

    .venv/bin/python bench/soak.py                        # 50 rounds, every 2nd kill right after the job
    .venv/bin/python bench/soak.py --rounds 200 --after-every 3
    .venv/bin/python bench/soak.py --pg-url               # PostgreSQL (temp database next to .../test)
    .venv/bin/python bench/soak.py --embedded-redis

Set-up as bench/queue.py's: a temporary ATELIER_HOME (never ./var), a unique QUEUE_NAMESPACE, the real
Redis at redis://127.0.0.1:6379/0 when it answers (else the embedded redis-server), a SQLite file in
the temporary home (or a temporary PostgreSQL database with --pg-url), migrations.upgrade(), and
JOB_HEARTBEAT_TIMEOUT_S=3 (--heartbeat-s), JOB_MAINTENANCE_CHANCE=1000000 so that the messages of a
killed worker are redelivered within seconds (as in tests/functional/test_faults.py).

Workers are real `dramatiq jobs bench._queue_actors --processes 1 --threads 2 --queues soak`
subprocesses, each in its own process group. The actor (bench/_queue_actors.py soak_write) marks its
start, waits until released, inserts one row idempotently (INSERT ... ON CONFLICT DO NOTHING on the
round's unique key), then counts its finish and pushes a notification. Each round:

  mid-job kill (most rounds): send the message; when the job has started, SIGKILL the worker's
      process group; start a fresh worker; release the job; wait until it is done (the broker's
      maintenance gives the dead worker's message to the fresh worker after the heartbeat timeout);
  after-finish kill (every --after-every'th round): the job is released beforehand; SIGKILL the worker
      when its finish notification arrives (a BLPOP), at points taken in turn from --after-kill-points:
      0, 1 or 2 ms later (after the job's work; mostly before the done marker, i.e. the ack, which
      follows by ~1-2 ms on 2 CPUs; or already acked), or 'marker': the worker is frozen (SIGSTOP) and
      run in 20 us slices until the message is acked, then killed (the JobRegistry middleware keeps no
      marker apart from the ack, and the inbox of done_on_commit actors). Once the marker is set, the
      redelivery must be a no-op. The state at the kill is recorded: acked / before the marker.

A round is over when the message is acked (no longer in the queue's message hash) and the job finished,
or after --round-timeout seconds. Counted per round: lost (no row, or never finished), duplicated
(finished more than once, i.e. the job body ran again after its work was done; or more than one row).
The fresh worker of a round is the worker of the next one. Prints totals "lost: X, duplicated: Y over
N kills" and the time taken. This is a benchmark, not a test: it prints figures and exits 0 when every
round could be run (1 if a round could not start). Everything it made is removed at the end, also on
Ctrl-C (worker process groups, this run's Redis keys, the temporary database and home).
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(_HERE)
# the repository replaces bench/ on the path: bench/queue.py must not shadow the standard queue module
sys.path[0] = ROOT

import argparse  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

from bench.queue import (BIN, PG_DEFAULT, REAL_REDIS, Cleanup, Workers, _sigterm,  # noqa: E402
                         delete_keys, setup_environment, stop_embedded_redis)


class RoundFailed(Exception):
    pass


def wait_for(check, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def step_until_marker(pgid: int, redis_id: str, slice_s: float = 20e-6, limit_s: float = 5) -> None:
    """Freezes the worker's process group, then lets it run in short slices until the message is acked
    (the done marker), leaving it stopped for the kill that follows. A command the worker had sent is
    executed by Redis even while the worker is stopped, so the state read between slices is exact."""
    from models_db.redis_store import client
    r = client()
    msgs_key = f"{os.environ['QUEUE_NAMESPACE']}:soak.msgs"
    os.killpg(pgid, signal.SIGSTOP)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not r.hexists(msgs_key, redis_id):
            return
        os.killpg(pgid, signal.SIGCONT)
        until = time.perf_counter() + slice_s
        while time.perf_counter() < until:
            pass
        os.killpg(pgid, signal.SIGSTOP)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=50, help="kills (default 50)")
    p.add_argument("--after-every", type=int, default=2,
                   help="every K-th round kills right after the job finished (default 2; 0: never)")
    p.add_argument("--after-kill-points", default="0,1,2,marker",
                   help="after-finish rounds, in turn: kill N ms after the finish notification, or 'marker': "
                        "step the stopped worker (SIGSTOP/SIGCONT, 20 us slices) until the done "
                        "marker (the ack) is set and kill it (default 0,1,2,marker)")
    p.add_argument("--heartbeat-s", type=int, default=3, help="JOB_HEARTBEAT_TIMEOUT_S (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of the worker process (default 2)")
    p.add_argument("--round-timeout", type=float, default=60, help="seconds to wait for a round's job")
    p.add_argument("--redis-url", default="", help=f"Redis to use (default {REAL_REDIS} if it answers, "
                                                   "else the embedded redis-server)")
    p.add_argument("--embedded-redis", action="store_true", help="use Atelier's embedded redis-server")
    p.add_argument("--pg-url", nargs="?", const=PG_DEFAULT, default="",
                   help=f"use PostgreSQL: a temporary database next to this one (default {PG_DEFAULT})")
    args = p.parse_args()
    points = [x.strip() if x.strip() == "marker" else float(x) for x in args.after_kill_points.split(",")
              if x.strip()] or [0.0]

    signal.signal(signal.SIGTERM, _sigterm)
    cleanup = Cleanup()
    try:
        ctx = setup_environment(args, cleanup, "soak")
        home, ns = ctx["home"], ctx["ns"]
        os.environ.update(JOB_HEARTBEAT_TIMEOUT_S=str(args.heartbeat_s), JOB_MAINTENANCE_CHANCE="1000000")

        import settings
        settings.reload()
        from tqdm import tqdm

        from models_db import db as database
        from models_db.migrations import upgrade
        upgrade()
        import jobs  # noqa: F401  (Atelier's broker and middleware)
        from models_db.redis_store import client
        cleanup.add("stop the embedded redis-server", stop_embedded_redis)
        s = settings.get()
        r = client()

        def clean_redis():
            print(f"cleanup: {delete_keys(r, f'{ns}:*')} Redis keys of this run removed", flush=True)

        cleanup.add("remove this run's Redis keys", clean_redis)
        from bench import _queue_actors as qa
        database.db.create_tables([qa.SoakRow], safe=True)
        database.db.close()

        env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
        workers = Workers(home, env)
        cleanup.add("stop the workers", workers.stop_all, signal.SIGKILL)
        cmd = [str(BIN / "dramatiq"), "jobs", "bench._queue_actors", "--processes", "1",
               "--threads", str(args.threads), "--queues", qa.SOAK_QUEUE]
        started_workers = [0]

        def start_worker():
            started_workers[0] += 1
            return workers.start(f"worker-{started_workers[0]:03d}", cmd)

        def count(kind: str, tag: str) -> int:
            return int(r.get(qa.soak_key(kind, tag)) or 0)

        msgs_key = f"{ns}:{qa.SOAK_QUEUE}.msgs"
        dq_msgs_key = f"{ns}:{qa.SOAK_QUEUE}.DQ.msgs"
        redis_desc = s.redis_url or f"embedded ({s.redis_socket})"
        db_desc = f"PostgreSQL {ctx['pg_db']} (temporary)" if ctx["pg_db"] else "SQLite file in the temp home"
        print(f"home {home}; namespace {ns}; redis {redis_desc}; database {db_desc}; "
              f"heartbeat timeout {args.heartbeat_s} s; {os.cpu_count()} CPUs", flush=True)

        rounds = []
        t_start = time.perf_counter()
        worker = start_worker()
        bar = tqdm(range(args.rounds), desc="kills", unit="kill")
        lost = dup = 0
        for i in bar:
            t_round = time.perf_counter()
            tag = f"r{i:04d}"
            after = bool(args.after_every) and i % args.after_every == args.after_every - 1
            if after:
                r.set(qa.soak_key("release", tag), 1)
            msg = qa.soak_write.send(tag)
            redis_id = msg.options["redis_message_id"]
            if after:
                point = points[(i // args.after_every) % len(points)]
                got = r.blpop([qa.soak_key("notify", tag)], timeout=args.round_timeout)
                if got is not None and point == "marker":
                    step_until_marker(worker.pid, redis_id)
                elif point:
                    until = time.perf_counter() + point / 1000
                    while time.perf_counter() < until:
                        pass  # busy wait: sleep() is too coarse for these delays
                os.killpg(worker.pid, signal.SIGKILL)  # after the job's work, mostly before its ack
                kill_at = point if point == "marker" else f"+{point:g} ms"
                if got is None:
                    raise RoundFailed(f"round {i}: the job did not finish within {args.round_timeout} s")
                state = "before the marker" if r.hexists(msgs_key, redis_id) else "acked"
            else:
                if not wait_for(lambda: count("started", tag) >= 1, args.round_timeout):
                    os.killpg(worker.pid, signal.SIGKILL)
                    raise RoundFailed(f"round {i}: the job did not start within {args.round_timeout} s")
                os.killpg(worker.pid, signal.SIGKILL)
                state, kill_at = "mid-job", "started"
            workers.stop(worker, signal.SIGKILL)  # reap it (the group is dead already)
            worker = start_worker()
            if not after:
                r.set(qa.soak_key("release", tag), 1)

            def over():
                return (count("finished", tag) >= 1 and not r.hexists(msgs_key, redis_id)
                        and not r.hexists(dq_msgs_key, redis_id))
            finished_in_time = wait_for(over, args.round_timeout, 0.02)
            database.db.connect(reuse_if_open=True)
            rows = qa.SoakRow.select().where(qa.SoakRow.round == tag).count()
            database.db.close()
            res = {"mode": "after" if after else "mid", "state": state, "kill_at": kill_at,
                   "started": count("started", tag), "finished": count("finished", tag), "rows": rows,
                   "timeout": not finished_in_time, "seconds": time.perf_counter() - t_round}
            res["lost"] = res["finished"] == 0 or rows == 0
            res["dup"] = res["finished"] > 1 or rows > 1
            lost += res["lost"]
            dup += res["dup"]
            rounds.append(res)
            bar.set_postfix(lost=lost, duplicated=dup)
            if res["lost"] or res["dup"]:
                tqdm.write(f"round {i} ({res['mode']}, killed {state}): started {res['started']}, "
                           f"finished {res['finished']}, rows {rows}{', timed out' if res['timeout'] else ''}")
        bar.close()
        workers.stop(worker)
        elapsed = time.perf_counter() - t_start

        print()
        print(f"===== kill soak: {len(rounds)} SIGKILLs, heartbeat timeout {args.heartbeat_s} s, "
              f"maintenance chance 1000000, {redis_desc}, {db_desc} =====")
        for mode, label in (("mid", "mid-job kills"), ("after", "after-finish kills")):
            rs = [x for x in rounds if x["mode"] == mode]
            if not rs:
                continue
            starts = Counter(x["started"] for x in rs)
            print(f"{label:<20} {len(rs):4d}: lost {sum(x['lost'] for x in rs)}, duplicated "
                  f"{sum(x['dup'] for x in rs)} (job body ran twice {sum(x['finished'] > 1 for x in rs)}, "
                  f"rows > 1 {sum(x['rows'] > 1 for x in rs)}); job starts per round "
                  f"{dict(sorted(starts.items()))}; round time median "
                  f"{statistics.median(x['seconds'] for x in rs):.1f} s")
            if mode == "after":
                for state, n in sorted(Counter(x["state"] for x in rs).items()):
                    sub = [x for x in rs if x["state"] == state]
                    at = Counter(x["kill_at"] for x in sub)
                    print(f"    killed {state:<22} {n:4d}: duplicated {sum(x['dup'] for x in sub)}, "
                          f"lost {sum(x['lost'] for x in sub)}  (killed at: "
                          f"{', '.join(f'{k}: {v}' for k, v in sorted(at.items()))})")
        timeouts = sum(x["timeout"] for x in rounds)
        if timeouts:
            print(f"rounds that timed out ({args.round_timeout:g} s): {timeouts}")
        print(f"lost: {lost}, duplicated: {dup} over {len(rounds)} kills")
        rerun = [x for x in rounds if x["dup"] and x["state"] == "before the marker" and x["rows"] <= 1]
        if rerun:
            print(f"  of the duplicated: {len(rerun)} where the kill landed after the job's work but before the "
                  f"done marker (the ack), so the job body ran again (its row write, being "
                  f"idempotent, left one row)")
        print(f"time taken: {elapsed:.1f} s ({elapsed / max(1, len(rounds)):.1f} s per kill)")
        return 0
    except RoundFailed as e:
        print(f"\nFAILED: {e}", file=sys.stderr, flush=True)
        name = f"worker-{started_workers[0]:03d}"
        print(f"--- {name}.log (tail) ---\n{workers.tail(name)}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr, flush=True)
        return 130
    finally:
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
