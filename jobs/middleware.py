"""Dramatiq middleware of our own."""
from __future__ import annotations

import dramatiq

from models_db import db as database


class DbConnection(dramatiq.Middleware):
    """Each message runs with an open database connection, closed (returned) afterwards."""

    def before_worker_boot(self, broker, worker):
        database.init()

    def before_process_message(self, broker, message):
        database.init()
        database.db.connect(reuse_if_open=True)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if not database.db.is_closed():
            database.db.close()

    after_skip_message = after_process_message
