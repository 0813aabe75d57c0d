"""Statistics: per-period rollups, and all-time stats recomputed from the raw events."""
import dramatiq

from jobs.broker import logs_result
from models_db import stats


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=30 * 60 * 1000)
@logs_result
def rollup_stats() -> dict:
    """Per-period rows from the raw events, and every all-time counter repaired from them."""
    return stats.rollup()


@dramatiq.actor(queue_name="default", max_retries=10)
def refresh_model_stats(model_id: int) -> None:
    """After a review or comment: the model's all-time stats from its events (idempotent)."""
    stats.refresh_models([model_id])
