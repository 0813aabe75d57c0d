"""gunicorn hooks: a finished worker's live metrics are dropped from the shared registry."""


def child_exit(server, worker):
    import metrics
    metrics.process_exited(worker.pid)
