"""Account housekeeping."""
from __future__ import annotations

import dramatiq

from jobs.broker import logs_result
from models_db.accounts import delete_expired_sessions


@dramatiq.actor(queue_name="default", max_retries=3)
@logs_result
def expire_login_sessions() -> int:
    """Deletes log-ins past their expiry (they no longer sign anyone in; this only drops the rows)."""
    return delete_expired_sessions()
