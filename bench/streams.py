"""Stream worker speed: sustained events/s and event-to-online freshness, each beside a bare consumer (same run).

- throughput: a backlog of simulated events (`leadscore simulate`'s generator, consenting leads ingested first) is
  produced to the five topics, then read once by a bare aiokafka consumer that only deserialises nothing and counts
  (the floor), then processed by one real `leadscore stream worker` (a subprocess); events/s = events landed in both
  stores per second of processing, read from the worker's own metrics.
- the framework's floors: a plain Faust agent that only takes the same backlog in batches (`take_events`: Faust's
  per-message path, which the worker used before) and counts, and the same with the worker's consumer
  (`pipelines/streams/consumer.py`: each fetch handed over in one list), both with no parsing and no stores.
- freshness at each `--rates` (events/s, `max` = as fast as the producer goes): live events for `--seconds`, plus
  a probe every 100 ms: a listing view of a probe lead, timed from its event time until the lead's 1 d listing-view
  count in Redis has changed (read as serving reads it). The baseline is the same probe read back by a bare consumer
  (event time to the message being received), with the same load.

Runs a private stack on free ports, removed at the end. Usage:
    python bench/streams.py [--leads 20000] [--days 7] [--rates 1000 5000 max] [--seconds 20]
(environment: BENCH_WORKER_ARGS="--batch-size 5000" runs the worker with other options, BENCH_WORKER_PREFIX a
profiler before it, BENCH_LOGLEVEL its log level, BENCH_WORKER_LOG where its log goes)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.stream_baselines import BATCH_FLOOR, bare_read, faust_floor  # noqa: E402
from infra.config import Settings  # noqa: E402
from pipelines.streams.schema import SOURCE_TOPICS, TOPIC_WEB  # noqa: E402
from tests.conftest import free_ports, stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
PROBES = [f"PROBE-{i:02d}" for i in range(20)]


def prepare(settings: Settings, leads: int, days: int, out: Path) -> list[tuple[str, str, bytes]]:
    """Consenting simulated leads in the offline store; their events (in memory) ready to send."""
    import psycopg

    from pipelines.feature_store import apply
    from pipelines.ingest import ingest_crm
    from pipelines.simulate import generate_events, generate_profiles
    from pipelines.spec import load_spec
    from pipelines.streams.topics import ensure_topics

    apply(settings)
    ensure_topics(settings)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    profiles, intent = generate_profiles(leads, 11, end - timedelta(days=days), days)
    events = generate_events(profiles, intent, days, 11, end)
    out.mkdir(parents=True, exist_ok=True)
    profiles.to_csv(out / "broker_leads.csv", index=False)
    ingest_crm(settings, out / "broker_leads.csv", load_spec(REPO / "feature_repo/datasets/broker_leads.yaml"),
               progress=False)
    with psycopg.connect(settings.pg_dsn()) as conn:
        for lead in PROBES:
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES "
                         "(%s, 'scoring', true, 'bench') ON CONFLICT (lead_id, purpose) DO NOTHING", (lead,))
    return list(events)


async def produce(bootstrap: str, items, rate: float | None = None, seconds: float | None = None,  # noqa: ANN001
                  probe=None) -> int:  # noqa: ANN001
    """Send items (cycled, re-stamped live when `seconds` is set) at `rate`; call `probe(producer)` every 100 ms."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks=1)
    await producer.start()
    sent, pending, started, next_probe = 0, [], time.monotonic(), time.monotonic()
    chunk = 500 if rate is None else max(1, int(rate / 100))
    try:
        i, n = 0, len(items)
        while (seconds is None and i < n) or (seconds is not None and time.monotonic() - started < seconds):
            if rate is not None:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            now = datetime.now(UTC).isoformat()
            for _ in range(chunk):
                topic, key, value = items[i % n]
                if seconds is not None:  # live: same event, new id and time
                    body = json.loads(value)
                    body["event_id"], body["event_time"] = uuid.uuid4().hex, now
                    value = json.dumps(body).encode()
                pending.append(await producer.send(topic, value=value, key=key.encode()))
                sent, i = sent + 1, i + 1
                if seconds is None and i >= n:
                    break
            if probe is not None and time.monotonic() >= next_probe:
                next_probe += 0.1
                await probe(producer)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0)
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def probe_event(lead: str) -> tuple[bytes, float]:
    t = time.time()
    body = {"event_id": uuid.uuid4().hex, "lead_id": lead, "action": "listing_view",
            "event_time": datetime.fromtimestamp(t, UTC).isoformat(), "duration_s": 0.0, "listing_id": None}
    return json.dumps(body).encode(), t


def online_write(settings: Settings, n: int = 1000) -> tuple[float, float]:
    """Seconds to write n engagement rows online: the worker's writer (Feast's Redis layout) vs Feast's push API."""
    import pandas as pd
    from feast.data_source import PushMode

    from pipelines.feature_store import feature_store
    from pipelines.materialize import OnlineWriter

    store = feature_store(settings)
    view = store.get_feature_view("lead_engagement")
    names = [f.name for f in view.features]
    now = datetime.now(UTC)
    frame = pd.DataFrame({"lead_id": [f"PUSH-{i}" for i in range(n)], "event_timestamp": now, "created_at": now,
                          **{c: 1.0 for c in names}})
    for c in names:
        if "int" in str(view.schema[names.index(c)].dtype).lower():
            frame[c] = frame[c].astype("int64")
    store.push("lead_engagement_push", frame.head(10), to=PushMode.ONLINE)  # warm-up
    t0 = time.perf_counter()
    store.push("lead_engagement_push", frame, to=PushMode.ONLINE)
    feast_s = time.perf_counter() - t0
    writer = OnlineWriter(store, view)
    rows = [(lead, now, now, *([1.0] * len(names))) for lead in frame["lead_id"]]
    t0 = time.perf_counter()
    writer.write(rows)
    return time.perf_counter() - t0, feast_s


def metric(port: int, *names: str) -> float | tuple[float, ...]:
    """The worker's metrics `names` (summed over labels), from one scrape."""
    lines = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode().splitlines()
    values = tuple(sum(float(line.split()[-1]) for line in lines if line.startswith((name + " ", name + "{")))
                   for name in names)
    return values[0] if len(values) == 1 else values


def start_worker(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    level = os.environ.get("BENCH_LOGLEVEL", "warning")
    prefix = os.environ.get("BENCH_WORKER_PREFIX", "").split()  # e.g. a profiler: "py-spy record -o prof.txt --"
    extra = os.environ.get("BENCH_WORKER_ARGS", "").split()  # e.g. another batch size: "--batch-size 5000"
    argv = [*prefix, str(LEADSCORE), "stream", "worker", "--metrics-port", str(port), "--loglevel", level, *extra]
    proc = subprocess.Popen(argv,
                            env=env, cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            metric(port, "leadscore_stream_events_landed_total")
            return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the worker did not start; see {log}")


def throughput(settings: Settings, env: dict[str, str], events: list, port: int, log: Path) -> tuple:
    """(worker, bare consumer, Faust floor, batch-handoff floor events/s, the worker process) over one backlog.

    The worker's rate runs from its first landed batch to its last (startup and table recovery excluded), both
    times as the worker recorded them (`..._last_landed_timestamp_seconds`), so polling every 0.5 s costs no
    precision; each scrape costs the worker a thread and a rendering of every metric, so it is not done more often.
    """
    asyncio.run(produce(settings.kafka_bootstrap, events))
    bare = len(events) / asyncio.run(bare_read(settings.kafka_bootstrap, len(events)))
    floor = faust_floor(settings.kafka_bootstrap, len(events))
    batch_floor = faust_floor(settings.kafka_bootstrap, len(events), BATCH_FLOOR)
    proc = start_worker(env, port, log)
    first = None
    while True:
        landed, at = metric(port, "leadscore_stream_events_landed_total",
                            "leadscore_stream_last_landed_timestamp_seconds")
        if first is None and landed > 0:
            first = (landed, at)
        if landed >= len(events):
            break
        if proc.poll() is not None:
            raise RuntimeError(f"the worker died; see {log}")
        time.sleep(0.5)
    if at <= first[1]:
        raise RuntimeError("the whole backlog landed in one batch: use more --leads or --days")
    return (landed - first[0]) / (at - first[1]), bare, floor, batch_floor, proc


async def freshness(settings: Settings, events: list, rate: float | None, seconds: float,
                    bare: bool) -> tuple[list[float], int, float]:
    """Probe latencies (s): to visible online (worker) or to received (bare consumer), under live load."""
    from aiokafka import AIOKafkaConsumer

    from pipelines.feature_store import feature_store
    from pipelines.online import OnlineReader

    reader = OnlineReader(feature_store(settings), "lead_scoring_v1")
    waits: dict[str, float] = {}  # event id (bare) or lead (worker) -> event time
    samples: list[float] = []
    counts = {lead: reader.read([lead])[0].get("listing_views_1d") or 0 for lead in PROBES}
    cursor = {"i": 0}

    async def probe(producer) -> None:  # noqa: ANN001
        lead = PROBES[cursor["i"] % len(PROBES)]
        if lead in waits:  # still waiting on this lead's previous probe
            return
        cursor["i"] += 1
        value, t = probe_event(lead)
        waits[json.loads(value)["event_id"] if bare else lead] = t
        await producer.send(TOPIC_WEB, value=value, key=lead.encode())

    async def watch_online() -> None:
        loop = asyncio.get_running_loop()
        while True:
            for lead in [lead for lead in PROBES if lead in waits]:
                now_count = (await loop.run_in_executor(None, reader.read, [lead]))[0].get("listing_views_1d") or 0
                if now_count != counts[lead]:
                    samples.append(time.time() - waits.pop(lead))
                    counts[lead] = now_count
            await asyncio.sleep(0.002)

    async def watch_bare(consumer) -> None:  # noqa: ANN001
        while True:
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    if m.key and m.key.startswith(b"PROBE-"):
                        t = waits.pop(json.loads(m.value)["event_id"], None)
                        if t is not None:
                            samples.append(now - t)

    consumer = None
    if bare:
        consumer = AIOKafkaConsumer(*SOURCE_TOPICS, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    auto_offset_reset="latest")
        await consumer.start()
        await asyncio.sleep(1.0)
        watcher = asyncio.create_task(watch_bare(consumer))
    else:
        watcher = asyncio.create_task(watch_online())
    started = time.monotonic()
    sent = await produce(settings.kafka_bootstrap, events, rate, seconds, probe)
    achieved = sent / (time.monotonic() - started)
    await asyncio.sleep(3.0)  # let the last probes land
    watcher.cancel()
    if consumer is not None:
        await consumer.stop()
    return samples + [time.time() - t for t in waits.values()], sent, achieved


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q)) if samples else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--rates", nargs="+", default=["1000", "5000", "max"])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows: list[tuple[str, float, str, float, str]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        env = stack_env(Path(tmp) / "state")
        up = subprocess.run([str(LEADSCORE), "infra", "up"], env=env, cwd=REPO, capture_output=True, text=True)
        if up.returncode != 0:
            sys.exit(f"infra up failed: {up.stderr.strip().splitlines()[-1:]}")
        proc = None
        try:
            settings = Settings.load(env)
            t0 = time.monotonic()
            events = prepare(settings, args.leads, args.days, Path(tmp) / "sim")
            print(f"{args.leads} leads, {len(events)} events over {args.days} days prepared "
                  f"({time.monotonic() - t0:.1f} s)", flush=True)
            ours_s, feast_s = online_write(settings)
            rows.append(("online write, 1,000 changed leads", ours_s * 1000, "Feast push (ONLINE)", feast_s * 1000,
                         "ms"))
            port = free_ports(1)[0]
            log = Path(os.environ.get("BENCH_WORKER_LOG", Path(tmp) / "worker.log"))
            worker_rate, bare_rate, floor_rate, batch_floor_rate, proc = throughput(settings, env, events, port, log)
            label = f"sustained, backlog of {len(events):,}"
            rows.append((label, worker_rate, "bare aiokafka consumer", bare_rate, "events/s"))
            rows.append((label, worker_rate, "Faust agent, no work", floor_rate, "events/s"))
            rows.append((label, worker_rate, "batch handoff, no work", batch_floor_rate, "events/s"))
            print(f"throughput: worker {worker_rate:,.0f} events/s, bare consumer {bare_rate:,.0f} events/s, "
                  f"Faust agent doing nothing {floor_rate:,.0f} events/s, batch handoff doing nothing "
                  f"{batch_floor_rate:,.0f} events/s", flush=True)
            for rate_text in args.rates:
                rate = None if rate_text == "max" else float(rate_text)
                ours, sent, achieved = asyncio.run(freshness(settings, events, rate, args.seconds, bare=False))
                floor, _, _ = asyncio.run(freshness(settings, events, rate, args.seconds, bare=True))
                label = f"at {achieved:,.0f} ev/s ({rate_text})"
                for q in (50, 99):
                    rows.append((f"freshness p{q} {label}", pct(ours, q), "bare consumer receives", pct(floor, q),
                                 "ms"))
                print(f"{label}: {len(ours)} probes, p50 {pct(ours, 50):.0f} ms, p99 {pct(ours, 99):.0f} ms "
                      f"(bare p50 {pct(floor, 50):.0f}, p99 {pct(floor, 99):.0f})", flush=True)
        finally:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, cwd=REPO, capture_output=True)
    print(f"\n{'measure':<44}{'LeadScore':>12}   {'baseline (same run)':<26}{'baseline':>10}{'ratio':>8}")
    for name, ours, base_name, base, unit in rows:
        print(f"{name:<44}{ours:>12,.1f}   {base_name:<26}{base:>10,.1f}{ours / base:>8.2f}  {unit}")
    print("goals: >= 10,000 events/s per worker sustained; freshness p99 < 1,000 ms")
    print(f"cpu cores: {os.cpu_count()}; load average (1, 5, 15 min) before "
          f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
