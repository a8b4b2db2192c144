"""Benchmark the scoring service over HTTP beside the same model called in-process (the floor).

    python bench/serving.py [--seconds 10] [--url http://127.0.0.1:13000 --key ls_...] [--out result.json]

Without --url it starts `leadscore serve` on a free port against the running stack (`leadscore infra up`, a
champion promoted) and creates a key for itself. /score is driven closed-loop at concurrency 1, 8 and 32 (each
connection sends its next request when the last answer came); /rank sends 1,000 stored leads per call. The floor
runs the service's own code path in this process with no HTTP: the Redis read, the consent-free feature merge and
the model (score + explanation), one lead at a time and in batches of 8 and 32, and 1,000 leads for /rank.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_load import build_request, closed_loop  # noqa: E402


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99))}


def floor(settings, leads: list[str], seconds: float) -> dict:  # noqa: ANN001
    """The service's work for /score and /rank without HTTP, in this process."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # as the service sets its process
    threadpool_limits(1)
    from pipelines.feature_store import feature_store
    from serving.features import OnlineFeatures
    from serving.model import champion_version, load_version

    model = load_version(settings.model_name, champion_version(settings.model_name))
    online = OnlineFeatures(settings, feature_store(settings), model.feature_service)

    def score(ids: list[str], method: str) -> None:
        rows, _ = online.read(ids)
        model.score([{f: r.get(f) for f in model.features} for r in rows], explain=method, top_k=3)

    score(leads[:8], "path")  # as the service does when it loads a model: path tables built, the leaf walk compiled
    out = {}
    for name, batch, method in [("score_batch_1", 1, "path"), ("score_batch_8", 8, "path"),
                                ("score_batch_32", 32, "path"), ("score_shap_batch_8", 8, "shap")]:
        lat, i, t0 = [], 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            s = time.perf_counter()
            score(leads[i:i + batch] if i + batch <= len(leads) else leads[:batch], method)
            lat.append(time.perf_counter() - s)
            i = (i + batch) % len(leads)
        out[name] = {**percentiles(lat), "per_s": batch * len(lat) / (time.perf_counter() - t0)}
    lat = []
    for _ in range(5):
        s = time.perf_counter()
        rows, _ = online.read(leads[:1000])
        model.scorer.score_records(rows, method=None)  # what /rank runs (the service's engine, serving/engine.py)
        lat.append(time.perf_counter() - s)
    out["rank_1000"] = {"seconds": float(np.median(lat)), "leads_per_s": 1000 / float(np.median(lat))}
    return out


def online_leads(settings, most: int) -> list[str]:  # noqa: ANN001
    """Up to `most` lead ids that have features in the online store (a SCAN of its keys, decoded)."""
    import redis

    from pipelines.feature_store import feature_store
    from pipelines.redis_codec import EntityKeyCodec

    codec = EntityKeyCodec("lead_id", feature_store(settings).project)
    client = redis.Redis.from_url(settings.redis_url())
    leads = []
    for key in client.scan_iter(match=b"*" + codec.suffix, count=5000):
        if (lead := codec.value(key)) is not None:
            leads.append(lead)
            if len(leads) >= most:
                break
    return leads


def stored_leads(settings, candidates: list[str]) -> list[str]:  # noqa: ANN001
    """The candidates the champion's feature service holds online."""
    from pipelines.feature_store import feature_store
    from serving.features import OnlineFeatures
    from serving.model import champion_version, load_version

    model = load_version(settings.model_name, champion_version(settings.model_name))
    _, stored = OnlineFeatures(settings, feature_store(settings), model.feature_service).read(candidates)
    return [lead for lead, ok in zip(candidates, stored, strict=True) if ok]


def http(host: str, port: int, key: str, leads: list[str], seconds: float) -> dict:
    auth = {"Authorization": f"Bearer {key}"}
    score = [build_request(host, port, "/score", json.dumps({"lead_id": lead}).encode(), auth) for lead in leads]
    out = {}
    for c in (1, 8, 32):
        lat, errors, elapsed = closed_loop(host, port, score, c, seconds, warmup_s=2)
        out[f"score_c{c}"] = {**percentiles(lat), "per_s": len(lat) / elapsed, "errors": len(errors)}
    shap = [build_request(host, port, "/score", json.dumps({"lead_id": lead, "explain": "shap"}).encode(), auth)
            for lead in leads]
    lat, errors, elapsed = closed_loop(host, port, shap, 8, seconds, warmup_s=1)
    out["score_shap_c8"] = {**percentiles(lat), "per_s": len(lat) / elapsed, "errors": len(errors)}
    rank = [build_request(host, port, "/rank", json.dumps({"leads": [{"lead_id": x} for x in leads[:1000]]}).encode(),
                          auth)]
    lat, errors, elapsed = closed_loop(host, port, rank, 1, max(seconds, 5), warmup_s=1)
    out["rank_1000"] = {"seconds": float(np.median(lat)), "leads_per_s": 1000 * len(lat) / elapsed,
                        "errors": len(errors)}
    return out


def start_server(settings, workers: int) -> tuple:  # noqa: ANN001
    import subprocess

    import httpx

    from serving.cli import server_command, server_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(settings.state_dir / "bench-serving.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(server_command(settings, workers, port), env=server_env(workers), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(360):
        try:
            if httpx.get(f"http://{settings.host}:{port}/readyz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise SystemExit(f"the service did not become ready; see {log.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per concurrency level")
    parser.add_argument("--url", help="a running service (default: start one)")
    parser.add_argument("--key", help="API key for --url (default: create one)")
    parser.add_argument("--workers", type=int, default=1, help="service workers when the bench starts it")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    import psycopg

    from infra.config import Settings
    from serving.keys import create_key

    settings = Settings.load()
    os.environ.update(settings.mlflow_env())
    online = online_leads(settings, 20_000)  # from what the online store holds, whatever else the offline one has
    with psycopg.connect(settings.pg_dsn()) as conn:
        candidates = [r[0] for r in conn.execute("SELECT c.lead_id FROM compliance.consent c WHERE purpose = "
                                                 "'scoring' AND granted AND lead_id = ANY(%s) ORDER BY md5(c.lead_id)",
                                                 (online,))]
    leads = stored_leads(settings, candidates)[:2000]  # every request scores a lead: no cheap 404s in the figures
    if len(leads) < 1000:
        raise SystemExit(f"only {len(leads)} consenting leads are in the online store: run `leadscore demo` first")
    key = args.key or create_key(settings, "default", rate_per_s=1e9, burst=10**9)[0]
    proc = None
    if args.url:
        host, port = args.url.split("//")[1].split(":")
        port = int(port)
    else:
        proc, port = start_server(settings, args.workers)
        host = settings.host
    try:
        served = http(host, port, key, leads, args.seconds)
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(30)
    base = floor(settings, leads, args.seconds)
    report(served, base, args.workers)
    if args.out:
        args.out.write_text(json.dumps({"http": served, "floor": base, "load_avg": os.getloadavg()}, indent=1))


def report(served: dict, base: dict, workers: int) -> None:
    print(f"/score over HTTP ({workers} worker(s)) vs the same work in-process; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'':22s}{'p50 ms':>9s}{'p95 ms':>9s}{'p99 ms':>9s}{'per s':>9s}   floor (in-process batch of c)"
          f"{'p50':>7s}{'p99':>7s}{'per s':>8s}  ratio per s")
    rows = [(f"/score concurrency {c:<3d}", served[f"score_c{c}"], base[f"score_batch_{c}"]) for c in (1, 8, 32)]
    rows.append(("/score SHAP, conc. 8  ", served["score_shap_c8"], base["score_shap_batch_8"]))
    for label, h, f in rows:
        print(f"{label}{h['p50']:9.1f}{h['p95']:9.1f}{h['p99']:9.1f}{h['per_s']:9.0f}   "
              f"{'':30s}{f['p50']:7.1f}{f['p99']:7.1f}{f['per_s']:8.0f}  {f['per_s'] / h['per_s']:.1f}x"
              + (f"  ({h['errors']} errors)" if h["errors"] else ""))
    h, f = served["rank_1000"], base["rank_1000"]
    print(f"/rank 1,000 leads: {h['leads_per_s']:,.0f} leads/s ({h['seconds'] * 1000:.0f} ms a call) vs in-process "
          f"{f['leads_per_s']:,.0f} leads/s ({f['seconds'] * 1000:.0f} ms): {f['leads_per_s'] / h['leads_per_s']:.1f}x")


if __name__ == "__main__":
    main()
