"""atelier jobs stats | failed (list, show, retry, purge)"""
import json

import click


@click.group("jobs")
def jobs_group():
    """Inspect the queues and the jobs that failed."""


@jobs_group.command("stats")
@click.option("--json", "as_json", is_flag=True)
@click.option("--interval", default=1.0, show_default=True, help="Seconds between the two samples for rates.")
def stats(as_json, interval):
    """Queue depths, in-flight jobs, per-actor totals and current rates (this host's workers)."""
    import time

    from jobs.middleware import inflight_key
    from jobs.queues import actor_totals, queue_stats, stale_jobs
    from models_db.redis_store import client
    first = actor_totals()
    time.sleep(interval)
    totals = actor_totals()
    rates = {actor: {k: (v - first.get(actor, {}).get(k, 0)) / interval for k, v in t.items()}
             for actor, t in totals.items()}
    depths = queue_stats()
    inflight = [json.loads(v) | {"id": k.decode()} for k, v in client().hgetall(inflight_key()).items()]
    if as_json:
        click.echo(json.dumps({"queues": depths, "inFlight": inflight, "actors": totals, "ratesPerSecond": rates,
                               "stale": stale_jobs()}, indent=2))
        return
    click.echo(f"{'queue':<12}{'ready':>8}{'delayed':>9}{'in flight':>11}{'dead':>7}")
    for queue, d in depths.items():
        click.echo(f"{queue:<12}{d['ready']:>8}{d['delayed']:>9}{d['in_flight']:>11}{d['dead']:>7}")
    if totals:
        click.echo(f"\n{'actor':<28}{'started':>9}{'succeeded':>11}{'failed':>8}{'retried':>9}{'skipped':>9}"
                   f"{'done/s':>9}")
        for actor, t in sorted(totals.items()):
            click.echo(f"{actor:<28}" + "".join(f"{int(t.get(k, 0)):>{w}}" for k, w in (
                ("started", 9), ("succeeded", 11), ("failed", 8), ("retried", 9), ("skipped", 9)))
                + f"{rates[actor].get('succeeded', 0):>9.1f}")
    for job in inflight:
        click.echo(f"in flight: {job['actor']} {job['id']} on pid {job['pid']}")


@jobs_group.group("failed", invoke_without_command=True)
@click.option("--queue", default=None)
@click.pass_context
def failed(ctx, queue):
    """List dead-lettered jobs (and show, retry or purge them)."""
    if ctx.invoked_subcommand:
        return
    from jobs.queues import failed_by_run
    items = failed_by_run(queue)
    for item in items:
        of_run = f"[{images(item['count'])} of run {item['run']}] " if "run" in item else ""
        click.echo(f"{item['id']}  {item['queue']:<8} {item['actor']:<24} {of_run}{item['error']}")
    click.echo(f"{sum(item.get('count', 1) for item in items)} failed job(s)", err=True)


def images(count: int) -> str:
    return f"{count} image{'' if count == 1 else 's'}"


@failed.command("show")
@click.argument("message_id")
def show(message_id):
    from jobs.queues import describe, find_failed
    found = find_failed(message_id)
    if found is None:
        raise click.ClickException(f"no failed job {message_id}")
    click.echo(describe(found[1]))


@failed.command("retry")
@click.argument("message_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True)
@click.option("--run", "run_id", type=int, default=None, help="every failed image of this generation run")
def retry(message_ids, retry_all, run_id):
    from jobs.queues import failed as list_failed
    from jobs.queues import retry_failed, retry_failed_run
    if run_id is not None:
        click.echo(f"requeued {retry_failed_run(run_id)} job(s)")
        return
    ids = [item["id"] for item in list_failed()] if retry_all else list(message_ids)
    if not ids:
        raise click.ClickException("name the jobs to retry, or pass --all")
    outcomes = {i: retry_failed(i) for i in ids}
    missing = [i for i, outcome in outcomes.items() if outcome is None]
    click.echo(f"requeued {list(outcomes.values()).count('sent')} job(s)")
    settled = list(outcomes.values()).count("settled")
    if settled:
        click.echo(f"{settled} had nothing left to do (their generation job is no longer failed): removed")
    if missing:
        raise click.ClickException(f"not found: {', '.join(missing)}")


@failed.command("purge")
@click.option("--queue", default=None)
@click.confirmation_option(prompt="Delete these failed jobs for good?")
def purge(queue):
    from jobs.queues import purge_failed
    click.echo(f"purged {purge_failed(queue)} job(s)")


COMMANDS = [jobs_group]
