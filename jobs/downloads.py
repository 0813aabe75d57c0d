"""Download counting, off the request path."""
import dramatiq

from jobs.broker import logs_result
from models_db import downloads


@dramatiq.actor(queue_name="default", max_retries=10)
def record_download(download_id: str, file_id: int, user_id: int | None) -> None:
    downloads.record(download_id, file_id, user_id)


@dramatiq.actor(queue_name="default", max_retries=3, time_limit=30 * 60 * 1000)
@logs_result
def reconcile_download_counts() -> int:
    """Repairs all-time counters from the recorded downloads (they drift only through manual edits)."""
    from models_db.stats import reconcile_download_counts as reconcile
    return reconcile()
