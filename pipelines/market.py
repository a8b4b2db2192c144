"""Market context: load the RBI repo-rate history (feature_repo/data) into `offline.market_context` per city."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

from infra.config import REPO_ROOT, Settings

REPO_RATE_CSV = REPO_ROOT / "feature_repo" / "data" / "rbi_repo_rate.csv"
NATIONAL = "IN"  # the all-India key: a lead whose city is unknown can still be joined on it


def read_repo_rate(path=REPO_RATE_CSV) -> list[tuple[datetime, float]]:  # noqa: ANN001
    with open(path, newline="") as fh:
        return [(datetime.fromisoformat(r["effective_date"]).replace(tzinfo=UTC), float(r["repo_rate_pct"]))
                for r in csv.DictReader(fh)]


def load_repo_rate(settings: Settings, cities: list[str] | None = None) -> int:
    """Upsert one row per rate change for every city (default: the cities leads live in, and 'IN'); row count."""
    import psycopg

    changes = read_repo_rate()
    with psycopg.connect(settings.pg_dsn()) as conn:
        if cities is None:
            cities = [r[0] for r in conn.execute(
                "SELECT DISTINCT city FROM offline.lead_demographics WHERE city IS NOT NULL")]
        cities = sorted({*cities, NATIONAL})
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO offline.market_context AS t (city, event_timestamp, repo_rate_pct) VALUES (%s, %s, %s)
                   ON CONFLICT (city, event_timestamp) DO UPDATE SET repo_rate_pct = EXCLUDED.repo_rate_pct,
                       created_at = now() WHERE t.repo_rate_pct IS DISTINCT FROM EXCLUDED.repo_rate_pct""",
                [(city, when, rate) for city in cities for when, rate in changes])
    return len(cities) * len(changes)
