"""Queued work. `dramatiq jobs` loads the broker first, then every actor module."""
from jobs import broker  # noqa: F401  (must come first)
from jobs import (downloads, images, ingest, leaderboards, notifications, queues, search, stats,  # noqa: F401,E402
                  storage, uploads)
