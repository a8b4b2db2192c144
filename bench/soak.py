"""Soak: scoring, streaming and materialization together at a fixed share of their measured capacity.

    python bench/soak.py [--seconds 150] [--share 0.2] [--leads 5000] [--out soak.json]

On a private stack (free ports, removed at the end): X Education ingested, materialized and a small champion
trained for scoring; simulated broker leads ingested for the stream. Each load's capacity is measured alone first
(`/score` closed-loop at concurrency 8; a backlog through one stream worker; one materialization of both views).
Then, for `--seconds`, all three run at once at `--share` of capacity: `/score` open loop at a fixed rate (latency
from each request's scheduled time, so a stall is not hidden), live events at a fixed rate, and a materialization
every (its duration / share) seconds. Printed beside a baseline of the same run: `/score` p99 under the soak vs the
same rate alone, the events that landed vs those sent (lost = sent - landed - dead-lettered, the aim 0), and each
process's memory at the end vs the start of the soak, against a bound stated per process (`bound_mib`): growth
within max(10 %, 50 MiB), plus, for the three whose memory holds what the soak adds by design, that state's own
size: PostgreSQL's shared buffers filling (256 MiB as LeadScore starts it), the stream worker's table state (each
event's id kept for de-duplication while its day is in the kept windows, with its hour and day buckets: at most
WORKER_BYTES_PER_EVENT per event landed) and the embedded broker's log, which it keeps in memory (at most
BROKER_BYTES_PER_EVENT per event sent; production Kafka keeps it on disk). Growth beyond that is a leak to find.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.http_load import build_request, closed_loop  # noqa: E402
from bench.serving import percentiles, start_server  # noqa: E402
from bench.streams import metric, prepare, produce, start_worker  # noqa: E402
from infra.config import Settings  # noqa: E402
from tests.conftest import SHARED_DATA, free_ports, stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"


async def _open_loop(host: str, port: int, requests: list[bytes], rate: float, seconds: float,
                     connections: int = 8) -> tuple[list[float], list[int]]:
    """Send requests at `rate` per second for `seconds` over keep-alive connections; (latencies from each request's
    scheduled time, non-200 statuses)."""
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter() + 0.2
    total = int(rate * seconds)

    async def connection(k: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for i in range(k, total, connections):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - due)
            if status != 200:
                errors.append(status)
        writer.close()

    await asyncio.gather(*(connection(k) for k in range(connections)))
    return latencies, errors


SHARED_BUFFERS_MIB = 256  # infra/postgres.py starts PostgreSQL with shared_buffers=256MB
WORKER_BYTES_PER_EVENT = 200  # a 16-character event id in its day's list (~75 B) and bucket counts, with slack
BROKER_BYTES_PER_EVENT = 5_000  # the embedded broker's in-memory log: ~4.4 KB per event measured (docs/reliability.md)


def bound_mib(name: str, start_mib: float, events: int) -> float:
    """The most `name`'s memory may grow during the soak (see the module docstring)."""
    base = max(0.1 * start_mib, 50.0)
    if name == "postgres":
        return base + SHARED_BUFFERS_MIB
    if name == "stream worker":
        return base + WORKER_BYTES_PER_EVENT * events / 2**20
    if name == "kafka":
        return base + BROKER_BYTES_PER_EVENT * events / 2**20
    return base


def _rss(pids: dict[str, int]) -> dict[str, float]:
    """MiB of each process and its children, proportional set size (PostgreSQL's shared buffers, mapped by every
    backend, counted once in all)."""
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            out[name] = sum(p.memory_full_info().pss for p in [proc, *proc.children(recursive=True)]) / 2**20
        except psutil.NoSuchProcess:
            out[name] = float("nan")
    return out


def _setup(settings: Settings, env: dict[str, str], tmp: Path, leads: int) -> tuple[list, list[str]]:
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.spec import load_spec

    events = prepare(settings, leads, 3, tmp / "sim")  # simulated broker leads ingested, their events in memory
    ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv",
               load_spec(REPO / "feature_repo/datasets/xeducation.yaml"), progress=False)
    materialize(settings)
    for args in (["train", "--feature-service", "xeducation_v1", "--trials", "0", "--max-epochs", "5",
                  "--no-progress"], ["promote"]):
        done = subprocess.run([str(LEADSCORE), *args], env=env, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"leadscore {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        scored = [r[0] for r in conn.execute("SELECT lead_id FROM offline.xeducation ORDER BY lead_id LIMIT 2000")]
    return events, scored


def _stream_capacity(settings: Settings, events: list, port: int) -> float:
    """Events/s one worker lands from a backlog (its own metrics: first to last landed batch)."""
    base = metric(port, "leadscore_stream_events_landed_total")
    asyncio.run(produce(settings.kafka_bootstrap, events))
    first = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        landed, at = metric(port, "leadscore_stream_events_landed_total",
                            "leadscore_stream_last_landed_timestamp_seconds")
        if first is None and landed > base:
            first = (landed, at)
        if landed >= base + len(events):
            break
        time.sleep(0.5)
    return (landed - first[0]) / max(at - first[1], 1e-3)


def _stream_load(env: dict[str, str], events: list, rate: float, seconds: float, results) -> None:  # noqa: ANN001
    """Live events at `rate` for `seconds` (a process of its own); puts ("sent", n)."""
    settings = Settings.load(env)
    results.put(("sent", asyncio.run(produce(settings.kafka_bootstrap, events, rate, seconds))))


def _materialize_load(env: dict[str, str], every: float, seconds: float, results) -> None:  # noqa: ANN001
    """A materialization of every view each `every` seconds for `seconds`; puts ("materializations", durations)."""
    from pipelines.materialize import materialize

    settings = Settings.load(env)
    took, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        materialize(settings)
        took.append(time.monotonic() - t)
        time.sleep(max(0.0, every - (time.monotonic() - t)))
    results.put(("materializations", took))


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150.0)
    # each capacity is measured with the whole machine; three loads at 0.2 each ask for about 0.6 of it
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from pipelines.materialize import materialize
    from serving.keys import create_key

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        env = stack_env(Path(tmp) / "state")
        os.environ.update(env)  # the service and the in-process helpers use this private stack
        up = subprocess.run([str(LEADSCORE), "infra", "up"], env=env, cwd=REPO, capture_output=True, text=True)
        if up.returncode != 0:
            sys.exit(f"infra up failed: {up.stderr.strip().splitlines()[-1:]}")
        worker = server = None
        try:
            settings = Settings.load(env)
            t0 = time.monotonic()
            events, scored = _setup(settings, env, Path(tmp), args.leads)
            print(f"set up in {time.monotonic() - t0:.0f} s: {len(events):,} events, {len(scored)} scored leads",
                  flush=True)
            key, _ = create_key(settings, "default", rate_per_s=1e6, description="bench/soak.py")
            server, port = start_server(settings, 1)
            auth = {"Authorization": f"Bearer {key}"}
            requests = [build_request(settings.host, port, "/score", json.dumps({"lead_id": x}).encode(), auth)
                        for x in scored]
            wport = free_ports(1)[0]
            worker = start_worker(env, wport, Path(tmp) / "worker.log")
            # capacities, each alone
            lat, errors, elapsed = closed_loop(settings.host, port, requests, 8, 8.0, warmup_s=2)
            score_cap = len(lat) / elapsed
            half = len(events) // 2
            stream_cap = _stream_capacity(settings, events[:half], wport)
            t = time.monotonic()
            materialize(settings)
            mat_s = time.monotonic() - t
            rate = args.share * score_cap
            print(f"capacity alone: /score {score_cap:,.0f}/s, stream {stream_cap:,.0f} events/s, materialization "
                  f"{mat_s:.1f} s; soak at {args.share:.0%}", flush=True)
            alone, alone_err = asyncio.run(_open_loop(settings.host, port, requests, rate, 15.0))
            pids = {"scoring service": server.pid, "stream worker": worker.pid}
            from infra import stack

            for srv in stack.servers(settings):
                if srv.pid():
                    pids[srv.name] = srv.pid()
            rss_start = _rss(pids)
            landed0, dead0 = metric(wport, "leadscore_stream_events_landed_total",
                                    "leadscore_stream_deadlettered_total")
            # the producer and the materializer in processes of their own: in this one they would take the GIL from
            # the open-loop client, whose latencies would then measure the bench, not the service
            ctx = multiprocessing.get_context("spawn")
            results = ctx.Queue()
            loads = [ctx.Process(target=_stream_load, args=(env, events[half:], args.share * stream_cap,
                                                            args.seconds, results)),
                     ctx.Process(target=_materialize_load, args=(env, mat_s / args.share, args.seconds, results))]
            for load in loads:
                load.start()
            soak, soak_err = asyncio.run(_open_loop(settings.host, port, requests, rate, args.seconds))
            got = dict(results.get(timeout=args.seconds + 300) for _ in loads)
            for load in loads:
                load.join(60)
            sent, materializations = {"n": got["sent"]}, got["materializations"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                landed, dead = metric(wport, "leadscore_stream_events_landed_total",
                                      "leadscore_stream_deadlettered_total")
                if landed - landed0 >= sent["n"]:
                    break
                time.sleep(0.5)
            rss_end = _rss(pids)
        finally:
            from pipelines.demo_stream import stop_worker

            if worker is not None:
                stop_worker(worker)
            if server is not None:
                server.terminate()
                server.wait(30)
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, cwd=REPO, capture_output=True)
    lost = sent["n"] - (landed - landed0)
    rows = [("/score p99 ms, soak vs alone", percentiles(soak)["p99"], percentiles(alone)["p99"]),
            ("/score p50 ms, soak vs alone", percentiles(soak)["p50"], percentiles(alone)["p50"]),
            ("events landed vs sent", landed - landed0, sent["n"]),
            ("materialization s, soak vs alone", max(materializations, default=float("nan")), mat_s)]
    rows += [(f"MiB {name}, end vs start", rss_end[name], rss_start[name]) for name in pids]
    bounds = {name: bound_mib(name, rss_start[name], sent["n"]) for name in pids}
    print(f"\n{'measure':<44}{'value':>12}{'baseline':>12}{'ratio':>8}")
    for name, value, base in rows:
        print(f"{name:<44}{value:>12,.1f}{base:>12,.1f}{value / base if base else float('nan'):>8.2f}")
    grown = [n for n in pids if rss_end[n] - rss_start[n] > bounds[n]]
    print("memory growth vs its bound (MiB): " + "; ".join(
        f"{n} {rss_end[n] - rss_start[n]:+,.0f} of {bounds[n]:,.0f}" for n in pids))
    print(f"/score errors: {len(soak_err)} of {len(soak)} in the soak, {len(alone_err)} alone; events lost: {lost} "
          f"(dead-lettered {dead - dead0:.0f}); memory beyond its bound: {', '.join(grown) or 'none'}")
    print(f"cpu cores: {os.cpu_count()}; load average before {', '.join(f'{x:.2f}' for x in load_before)}, after "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "errors": len(soak_err), "lost": lost, "grown": grown,
                                        "bounds_mib": bounds,
                                        "share": args.share, "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
