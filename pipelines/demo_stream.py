"""The main job's streaming step: a simulated day of broker-lead events through one real stream worker.

Simulated leads (`leadscore simulate`'s generator) are ingested by their spec (consent included), a
`leadscore stream worker` process is started, the day's events are produced to Kafka at `rate` events/s, and once
the worker has landed them all: one live listing view is timed from its event time until the lead's 1 d count in
Redis changes, and every streamed lead's latest offline row is compared with its online row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.config import REPO_ROOT, Settings


def start_worker(settings: Settings, metrics_port: int, log: Path) -> subprocess.Popen:
    """`leadscore stream worker` in the background, once its metrics answer."""
    script = Path(sys.executable).parent / "leadscore"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "infra"]
    env = {**os.environ, **settings.env, "LEADSCORE_STATE_DIR": str(settings.state_dir)}
    with open(log, "ab") as out:
        level = os.environ.get("LEADSCORE_STREAM_LOGLEVEL", "warning")
        proc = subprocess.Popen([*argv, "stream", "worker", "--metrics-port", str(metrics_port), "--loglevel", level],
                                env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the stream worker exited with code {proc.returncode}; see {log}")
        try:
            landed(metrics_port)
            return proc
        except OSError:
            time.sleep(0.2)
    stop_worker(proc)
    raise RuntimeError(f"the stream worker did not start within 120 s; see {log}")


def stop_worker(proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """SIGTERM (the worker commits and leaves its consumer group), SIGKILL only if it has not exited in `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # a killed member can stay in the group on brokers that never evict it (noida-db): say so
            print(f"stream worker {proc.pid} did not stop within {timeout:.0f} s; killed", file=sys.stderr)
            proc.kill()


def landed(metrics_port: int) -> float:
    """Events the worker has landed in both stores so far (its Prometheus counter)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("leadscore_stream_events_landed_total "))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_probe(settings: Settings, reader, lead_id: str, timeout: float = 30.0) -> tuple[int, int, float]:  # noqa: ANN001
    """Send one listing view of `lead_id` stamped now; (1 d count before, after, seconds until visible online)."""
    from pipelines.simulate import produce
    from pipelines.streams.schema import TOPIC_WEB

    before = reader.read([lead_id])[0].get("listing_views_1d") or 0
    t = time.time()
    body = {"event_id": uuid.uuid4().hex, "lead_id": lead_id, "event_time": datetime.fromtimestamp(t, UTC).isoformat(),
            "action": "listing_view", "duration_s": 0.0, "listing_id": "demo-listing"}
    produce(settings.kafka_bootstrap, [(TOPIC_WEB, lead_id, json.dumps(body).encode())], progress=False,
            security=settings.kafka_options())
    while time.time() - t < timeout:
        after = reader.read([lead_id])[0].get("listing_views_1d") or 0
        if after != before:
            return before, after, time.time() - t
        time.sleep(0.002)
    raise RuntimeError(f"lead {lead_id}'s listing view did not reach Redis within {timeout:.0f} s")


def offline_matches_online(settings: Settings, reader, lead_ids: list[str]) -> tuple[int, int]:  # noqa: ANN001
    """(leads whose latest offline row equals their online row, leads compared)."""
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        cur = conn.execute("SELECT DISTINCT ON (lead_id) * FROM offline.lead_engagement WHERE lead_id = ANY(%s) "
                           "ORDER BY lead_id, event_timestamp DESC", (lead_ids,))
        names = [d.name for d in cur.description]
        offline = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    online = {r["lead_id"]: r for r in reader.read(list(offline))}
    columns = [c for c in reader.columns if c in names]
    same = sum(all(_equal(offline[lead][c], online[lead][c]) for c in columns) for lead in offline)
    return same, len(offline)


def _equal(a, b) -> bool:  # noqa: ANN001
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) < 1e-6


def stream_a_day(settings: Settings, say: Callable[[str], None] = print, leads: int = 5_000, rate: float = 2000.0,
                 seed: int = 7) -> dict:
    """Stream one simulated day of `leads` leads through a real worker; see the module docstring."""
    from pipelines.feature_store import feature_store
    from pipelines.ingest import ingest_crm
    from pipelines.online import OnlineReader
    from pipelines.simulate import generate_events, generate_profiles, produce
    from pipelines.spec import load_spec
    from pipelines.streams.topics import ensure_topics

    ensure_topics(settings)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    profiles, intent = generate_profiles(leads, seed, end - timedelta(days=1), 1)
    events = generate_events(profiles, intent, 1, seed, end)
    out = settings.state_dir / "sim"
    out.mkdir(parents=True, exist_ok=True)
    profiles.to_csv(out / "broker_leads.csv", index=False)
    ingest_crm(settings, out / "broker_leads.csv", load_spec(REPO_ROOT / "feature_repo/datasets/broker_leads.yaml"),
               progress=False)
    port = _free_port()
    worker = start_worker(settings, port, settings.state_dir / "stream-worker.log")
    try:
        t0 = time.monotonic()
        sent = produce(settings.kafka_bootstrap, events, rate, progress=os.isatty(1),
                       security=settings.kafka_options())
        progress_at, last = time.monotonic(), -1.0
        while (now_landed := landed(port)) < sent:
            if now_landed > last:
                progress_at, last = time.monotonic(), now_landed
            if worker.poll() is not None or time.monotonic() - progress_at > 60:
                raise RuntimeError(f"the stream worker landed {now_landed:.0f} of {sent} events and stopped; see "
                                   f"{settings.state_dir}/stream-worker.log")
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        reader = OnlineReader(feature_store(settings), "lead_scoring_v1")
        consenting = profiles.loc[profiles["consent_scoring"] == "Yes", "lead_id"].tolist()
        rows = sorted({int(i) for i in events.lead if i >= 0})
        streamed = sorted(set(consenting) & set(profiles["lead_id"].iloc[rows]))
        probe = live_probe(settings, reader, streamed[0])
        # Redis shows the probe first: compare once it is in PostgreSQL too (on a busy machine that took over 30 s)
        deadline = time.monotonic() + 120
        while landed(port) < sent + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        same, compared = offline_matches_online(settings, reader, streamed)
    finally:
        stop_worker(worker)
    return {"leads": leads, "events": sent, "seconds": seconds, "probe_lead": streamed[0], "probe": probe,
            "same": same, "compared": compared}
