"""Every metric Atelier exports. Labels are bounded: endpoints are URL rules, actors and queues are
declared names, statuses are HTTP codes, priorities are roles. Live collectors: jobs.queues.QueueCollector
(queue depths) and jobs.fairness.UserQueueCollector (images per user, top N only)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

import metrics  # noqa: F401  (multiprocess set-up before prometheus_client)

LATENCY = (.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
JOB_SECONDS = (.005, .025, .1, .5, 1, 5, 15, 60, 300, 1800, 7200)

http_requests = Counter("atelier_http_requests_total", "HTTP requests", ["endpoint", "method", "status"])
http_latency = Histogram("atelier_http_request_duration_seconds", "HTTP request latency",
                         ["endpoint", "method"], buckets=LATENCY)

job_messages = Counter("atelier_job_messages_total",
                       "Job messages by outcome: started, succeeded, failed, retried, skipped, dead",
                       ["actor", "queue", "outcome"])
job_duration = Histogram("atelier_job_duration_seconds", "Time an actor took per message", ["actor"],
                         buckets=JOB_SECONDS)
job_queue_wait = Histogram("atelier_job_queue_wait_seconds", "Time from enqueue to start", ["actor"],
                           buckets=JOB_SECONDS)

ingest_bytes = Counter("atelier_ingest_bytes_total", "Bytes hashed and checked by the ingest actor")
ingest_files = Counter("atelier_ingest_files_total", "Files ingested by outcome", ["outcome"])
downloads = Counter("atelier_downloads_total", "Download redirects handed out")

generation_images = Counter("atelier_generation_images_total", "Images generated", ["family"])
generation_steps = Counter("atelier_generation_steps_total", "Denoising steps run (x batch size)", ["family"])
generation_batch = Histogram("atelier_generation_batch_size", "Images per GPU batch", ["family"],
                             buckets=(1, 2, 4, 8, 16, 32, 64))
generation_wait = Histogram("atelier_generation_wait_seconds", "Time from queued to started per image, by priority "
                            "(the user's role)", ["priority"], buckets=JOB_SECONDS)
generation_seconds = Histogram("atelier_generation_batch_duration_seconds", "Time to run one GPU batch", ["family"],
                               buckets=JOB_SECONDS)

search_latency = Histogram("atelier_search_duration_seconds", "Search query latency", ["backend", "kind"],
                           buckets=LATENCY)
search_index_seconds = Histogram("atelier_search_index_duration_seconds", "Time to index one batch", ["backend"],
                                 buckets=JOB_SECONDS)

gpu_utilization = Gauge("atelier_gpu_utilization_ratio", "GPU utilisation 0..1", ["gpu"], multiprocess_mode="max")
gpu_memory_used = Gauge("atelier_gpu_memory_used_bytes", "GPU memory in use", ["gpu"], multiprocess_mode="max")
gpu_memory_total = Gauge("atelier_gpu_memory_total_bytes", "GPU memory", ["gpu"], multiprocess_mode="max")
gpu_workers = Gauge("atelier_gpu_workers", "GPU worker processes alive", multiprocess_mode="livesum")
scheduler_last_tick = Gauge("atelier_scheduler_last_tick_timestamp_seconds",
                            "When the scheduler last enqueued an entry", ["entry"], multiprocess_mode="max")
