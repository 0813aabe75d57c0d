"""Download counting, off the request path."""
import dramatiq

from models_db import downloads


@dramatiq.actor(queue_name="default", max_retries=10)
def record_download(download_id: str, file_id: int, user_id: int | None) -> None:
    downloads.record(download_id, file_id, user_id)
