"""Prometheus metrics of the scoring service, served on /metrics beside BentoML's own request metrics.

Created on first use, after BentoML has set the worker's multi-process directory (and before Feast is imported).
"""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace


@cache
def metrics() -> SimpleNamespace:
    from prometheus_client import Counter, Histogram

    latency_buckets = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    return SimpleNamespace(
        latency=Histogram("leadscore_serving_request_seconds", "Time inside the service per request, by endpoint",
                          ["endpoint"], buckets=latency_buckets),
        scores=Histogram("leadscore_serving_score", "Scores served (calibrated probability)",
                         buckets=tuple(i / 10 for i in range(1, 11))),
        tiers=Counter("leadscore_serving_tier_total", "Scores served by tier", ["tier"]),
        errors=Counter("leadscore_serving_errors_total", "Requests answered with an error, by kind",
                       ["endpoint", "kind"]),
        batch=Histogram("leadscore_serving_batch_rows", "Leads per model call (micro-batches of /score, /rank calls)",
                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 512, 2048, 10000)),
        log_rows=Counter("leadscore_serving_log_rows_total", "Rows written to the prediction and audit logs",
                         ["kind"]),
        log_dropped=Counter("leadscore_serving_log_dropped_total",
                            "Log rows dropped after a long Postgres outage filled the buffer", ["kind"]),
        embedded=Counter("leadscore_serving_texts_embedded_total", "Message texts embedded at request time"),
        embed_cache_hits=Counter("leadscore_serving_embed_cache_hits_total", "Texts found already embedded"),
    )


def exposition() -> bytes:
    """Every metric of this service (BentoML's request metrics and ours, summed over its worker processes)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return BentoMLContainer.metrics_client.get().generate_latest()
