"""Queued work. `dramatiq jobs` loads the broker first, then every actor module."""
from jobs import (  # noqa: F401,E402
                  broker,  # noqa: F401  (must come first)
                  accounts,
                  downloads,
                  generation,
                  images,
                  ingest,
                  leaderboards,
                  notifications,
                  queues,
                  search,
                  stats,
                  storage,
                  uploads,
)
