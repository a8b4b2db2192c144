"""Prometheus metrics of the stream workers (served by `leadscore stream worker --metrics-port`).

Imported before Feast: `import feast` switches prometheus_client into multi-process mode for the whole process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("leadscore_stream_events_in_total", "Events read, per source topic", ["topic"])
ROWS_OUT = Counter("leadscore_stream_rows_out_total", "Rows written, per sink (offline, online, labels, messages)",
                   ["sink"])
EVENTS_LANDED = Counter("leadscore_stream_events_landed_total",
                        "Events whose batch has landed in both stores (then the batch may be committed)")
LAST_LANDED = Gauge("leadscore_stream_last_landed_timestamp_seconds",
                    "Unix time the last batch landed in both stores (with events landed: exact rates, stalls)")
DEADLETTERED = Counter("leadscore_stream_deadlettered_total", "Events sent to lead.deadletter, per reason",
                       ["reason"])
ERASED = Counter("leadscore_stream_erased_events_total",
                 "Events of erased leads dated before their erasure, refused (a replay must not bring a lead back)")
MINORS = Counter("leadscore_stream_minor_events_total",
                 "Events of leads under 18 without parental consent, not tracked (DPDP Act s.9)")
DUPLICATES = Counter("leadscore_stream_duplicates_total", "Events dropped as duplicates of an event id already seen")
BATCH_SIZE = Histogram("leadscore_stream_batch_size", "Events per processed batch",
                       buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000))
BATCH_SECONDS = Histogram("leadscore_stream_batch_seconds", "Seconds to process and land one batch",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
FRESHNESS = Histogram("leadscore_stream_freshness_seconds", "Event time to the batch landing in both stores",
                      buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10,
                               30, 60, 300))
LAG = Gauge("leadscore_stream_consumer_lag", "Messages behind the partition's high watermark",
            ["topic", "partition"])
SINK_ERRORS = Counter("leadscore_stream_sink_errors_total", "Failed writes to the stores (the batch is retried)")
