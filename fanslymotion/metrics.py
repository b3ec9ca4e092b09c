"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge(
            "fanslymotion_jobs",
            "Jobs in the database by status",
            ["status"],
            registry=self.registry,
        )
        self.queue_length = Gauge(
            "fanslymotion_queue_length", "Jobs waiting to be rendered", registry=self.registry
        )
        self.render_seconds = Histogram(
            "fanslymotion_render_seconds",
            "Wall time of successful renders",
            ["renderer", "resolution", "duration"],
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800),
            registry=self.registry,
        )
        self.transitions = Counter(
            "fanslymotion_job_transitions", "Job state changes", ["status"], registry=self.registry
        )
        self.retries = Counter(
            "fanslymotion_job_retries", "Renders retried after an error", registry=self.registry
        )
        self.gpu_memory = Gauge(
            "fanslymotion_gpu_memory_bytes",
            "GPU memory (CUDA renderers only)",
            ["kind"],
            registry=self.registry,
        )

        self.webhook_attempts = Counter(
            "fanslymotion_webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retry, give_up)",
            ["outcome"],
            registry=self.registry,
        )
        self.webhooks_pending = Gauge(
            "fanslymotion_webhooks_pending",
            "Webhook events not delivered yet (waiting or in flight)",
            registry=self.registry,
        )

        # cluster mode: one series per worker, read from the shared database at each scrape
        self.worker_up = Gauge(
            "fanslymotion_worker_up",
            "1 while the worker is loading, idle or busy with a fresh heartbeat",
            ["worker", "renderer"],
            registry=self.registry,
        )
        self.worker_busy = Gauge(
            "fanslymotion_worker_busy",
            "1 while the worker renders a job",
            ["worker", "renderer"],
            registry=self.registry,
        )
        self.worker_heartbeat_age = Gauge(
            "fanslymotion_worker_heartbeat_age_seconds",
            "Seconds since the worker's last heartbeat",
            ["worker", "renderer"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
