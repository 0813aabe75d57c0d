"""Prometheus metrics (multiprocess registry shared by gunicorn and Dramatiq workers)."""
