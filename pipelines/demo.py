"""The main job on the embedded servers, step by step: what `leadscore demo` (README's first command) runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from infra.config import REPO_ROOT, Settings

DEMO_DATASET = ("xeducation", "xeducation_Leads.csv")


def data_dir(settings: Settings) -> Path:
    """Where the shared real datasets live: LEADSCORE_DATA_DIR, default ../shared/data beside the checkout."""
    return Path(settings.env.get("LEADSCORE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def run_demo(settings: Settings, say: Callable[[str], None] = print) -> dict:
    """Servers up, Feast repo applied, the X Education export ingested, materialized, one lead read online."""
    from infra import stack
    from pipelines.feature_store import apply, feature_store
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.online import online_features
    from pipelines.spec import SpecError, load_spec

    t0 = time.monotonic()
    rows = stack.up(settings, say)
    say(f"[1/10] {len(rows)} servers healthy ({time.monotonic() - t0:.1f} s)")
    apply(settings)
    say("[2/10] feature repo applied (feature_repo/ -> Feast SQL registry in PostgreSQL)")
    name, file_name = DEMO_DATASET
    path = data_dir(settings) / file_name
    if not path.is_file():
        raise SpecError(f"the demo dataset {path} is missing: put the shared data there or set LEADSCORE_DATA_DIR")
    spec = load_spec(REPO_ROOT / "feature_repo" / "datasets" / f"{name}.yaml")
    result = ingest_crm(settings, path, spec, progress=os.isatty(1))
    say(f"[3/10] ingested {path.name}: read {result.rows_read}, loaded {result.rows_loaded}, "
        f"rejected {result.rows_rejected}" + "".join(f"; {n} x {r}" for r, n in result.reasons.most_common(3))
        + f"; label-leaking columns kept out: {len(spec.leaks_label)}")
    runs = materialize(settings, [name])
    say(f"[4/10] materialized {sum(r.rows_written for r in runs)} rows of consenting leads to Redis "
        f"({sum(r.seconds for r in runs):.1f} s)")
    store = feature_store(settings)
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        lead_id = conn.execute(f"SELECT lead_id FROM {spec.table} ORDER BY lead_id LIMIT 1").fetchone()[0]
    vector = online_features(store, spec.feature_service, [lead_id])[0]
    shown = {k: v for k, v in list(vector.items())[:8]}
    say(f"[5/10] online features of lead {lead_id} ({spec.feature_service}, {len(vector) - 1} features): {shown} ...")
    from pipelines.demo_stream import stream_a_day

    day = stream_a_day(settings, say)
    before, after, seconds = day["probe"]
    say(f"[6/10] streamed a simulated day: {day['events']:,} events of {day['leads']:,} leads through one stream "
        f"worker in {day['seconds']:.1f} s; a live listing view of {day['probe_lead']} reached Redis in "
        f"{seconds * 1000:.0f} ms (listing_views_1d {before} -> {after}); offline rows equal online ones for "
        f"{day['same']:,} of {day['compared']:,} leads")
    from pipelines.demo_model import curl_line, serve_and_score, train_and_promote

    say(f"[7/10] training on {spec.feature_service} (logistic regression, LightGBM, XGBoost, PyTorch MLP; Optuna, "
        "3 trials each within 30 s; cross-fitted in 5 folds) ...")
    model = train_and_promote(settings, spec.feature_service, say)
    m = model["metrics"]
    say(f"[7/10] {model['model_name']} version {model['version']} registered as @challenger: held-out ROC AUC "
        f"{m['roc_auc']:.3f}, log loss {m['log_loss']:.3f}, calibration error {m['ece']:.3f}; MLflow run and plots at "
        f"{settings.tracking_uri}")
    say(f"[8/10] promotion: {'promoted to @champion' if model['promoted'] else 'kept the champion'} "
        f"({model['reason']})")
    scored = serve_and_score(settings, lead_id, say)
    say(f"[9/10] served {settings.model_name}@champion (version {scored['model_version']}) on "
        f"http://{settings.host}:{settings.serving_port}: lead {lead_id} scored {scored['score']:.3f}, tier "
        f"{scored['tier']}. {scored['explanation']}")
    say(f"      try it: {curl_line(settings, lead_id)}")
    from pipelines.demo_monitor import monitor_cycle, rank_leads

    ranked = rank_leads(settings, spec.table)
    say(f"[10/10] ranked {ranked:,} leads through /rank, then one monitor cycle over what was served "
        "(drift against the champion's training reference, realized quality of the scored leads; these X Education "
        "leads are the model's own training rows, so their realized quality is in-sample here):")
    monitored = monitor_cycle(settings, say)
    say(f"      Evidently UI: {settings.evidently_url} (a project per model); Prometheus: {settings.prometheus_url}"
        " (alerts at /alerts); watch it hourly: leadscore monitor watch --every 1h")
    from pipelines.demo_model import DEMO_KEY

    say(f"      console: http://{settings.host}:{settings.serving_port}/console/ (sign in with the key in "
        f"{settings.secrets_dir / DEMO_KEY}, or a person's token: leadscore serve token --help)")
    say(f"done in {time.monotonic() - t0:.1f} s. MLflow UI: {settings.tracking_uri}; API docs: "
        f"http://{settings.host}:{settings.serving_port}/docs; stop: leadscore infra down")
    return {"lead_id": lead_id, "features": vector, "ingest": result, "stream": day, "model": model,
            "scored": scored, "monitored": monitored}
