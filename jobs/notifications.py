"""Telling users things."""
import dramatiq

from models_db import notifications


@dramatiq.actor(queue_name="default", max_retries=10)
def notify(user_id: int, kind: str, message: str, key: str) -> None:
    notifications.notify(user_id, kind, message, key)
