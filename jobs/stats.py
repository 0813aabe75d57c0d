"""Statistics rollups."""
import dramatiq

from models_db import stats


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=30 * 60 * 1000)
def rollup_stats() -> dict:
    return stats.rollup()
