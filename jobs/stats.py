"""Statistics rollups."""
import dramatiq

from jobs.broker import logs_result
from models_db import stats


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=30 * 60 * 1000)
@logs_result
def rollup_stats() -> dict:
    return stats.rollup()
