"""Drift caused by `leadscore simulate`, whose truth is known, found by the monitor end to end: simulated leads
ingested, their events streamed through a real worker, a model trained on the leads from before the drift, the
leads served by the real service, then `leadscore monitor drift` and `monitor performance`.

The leads created from the drift date on are 1.8x richer (covariate shift) and convert by a hidden intent unrelated
to their behaviour (concept drift). Half of them are served first ("after"), the other half later ("gate"): the
retraining loop, run over the later round alone, learns from the first and is gated on the second. This module
runs on a private stack of its own (its own state directory and ports): it writes broker leads that other modules
read from the session stack.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from infra.config import REPO_ROOT, Settings
from tests.conftest import leadscore, private_stack
from tests.integration.serving_support import create_key, post, run_ok, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "lead-scorer-simulated-it"
LEADS, DAYS = 3000, 20


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:  # noqa: ANN001
    """The private stack with the simulated world streamed, a model trained on the leads from before the drift,
    and both eras ranked by the real service; yields the env and each era's window; stops the stack."""
    from pipelines.demo_stream import landed, start_worker, stop_worker
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.simulate import generate_events, generate_profiles, produce
    from pipelines.simulate_drift import DriftSpec, apply_drift
    from pipelines.spec import load_spec
    from pipelines.streams.topics import ensure_topics
    from tests.conftest import free_ports

    root = tmp_path_factory.mktemp("simulated")
    with private_stack(root / "state", LEADSCORE_MODEL_NAME=MODEL) as env:
        settings = Settings.load(env)
        run_ok(["features", "apply"], env)
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        drift_from = end - timedelta(days=DAYS / 2)
        profiles, intent = generate_profiles(LEADS, 23, end - timedelta(days=DAYS), DAYS)
        profiles, funnel, activity, drifted = apply_drift(
            profiles, intent, DriftSpec(drift_from, income_factor=1.8, concept=True), 23)
        assert drifted > LEADS / 3
        events = generate_events(profiles, intent, DAYS, 23, end, funnel_intent=funnel, activity=activity)
        (root / "sim").mkdir()
        profiles.to_csv(root / "sim" / "broker_leads.csv", index=False)
        ingest_crm(settings, root / "sim" / "broker_leads.csv",
                   load_spec(REPO_ROOT / "feature_repo/datasets/broker_leads.yaml"), progress=False)
        ensure_topics(settings)
        port = free_ports(1)[0]
        worker = start_worker(settings, port, root / "worker.log")
        try:
            sent = produce(settings.kafka_bootstrap, events, None, progress=False)
            deadline = time.monotonic() + 300
            while landed(port) < sent and time.monotonic() < deadline:
                time.sleep(0.2)
            assert landed(port) >= sent, (root / "worker.log").read_text()[-2000:]
        finally:
            stop_worker(worker)
        materialize(settings, ["lead_demographics"])
        created = pd.to_datetime(profiles["created_at"], utc=True)
        before = set(profiles.loc[created < pd.Timestamp(drift_from), "lead_id"])
        _train_on(settings, before)
        consenting = profiles.loc[profiles["consent_scoring"] == "Yes", ["lead_id", "created_at"]]
        drifted_leads = sorted(set(consenting["lead_id"]) - before)
        # the drifted leads are served in two rounds: "after", then "gate", the loop's out-of-time cohort
        eras = {"before": sorted(set(consenting["lead_id"]) & before), "after": drifted_leads[::2],
                "gate": drifted_leads[1::2]}
        key = create_key(env, "it-simulated", "--rate", "100000", "--burst", "100000")
        windows = {}
        with serving(env, settings.serving_port, root / "serve.log", model=MODEL) as url:
            for era, leads in eras.items():
                since = datetime.now(UTC)
                reply = post(url, "/rank", {"leads": [{"lead_id": lead} for lead in leads]}, key)
                assert reply.status_code == 200, reply.text
                time.sleep(1.0)
                windows[era] = (since.isoformat(), datetime.now(UTC).isoformat())
                time.sleep(2.0)  # rounds apart by more than a second: the loop's windows are whole seconds
        yield {"env": env, "settings": settings, "windows": windows, "eras": eras}


def _train_on(settings: Settings, leads: set[str]) -> None:
    """Train MODEL on lead_scoring_v1 rows of `leads` only (the world before the drift) and make it champion."""
    from mlflow import MlflowClient

    from models.fit import FitOptions
    from models.train import configure_mlflow, train_frame
    from pipelines.training_data import build_training_set

    configure_mlflow(settings)
    frame = build_training_set(settings, "lead_scoring_v1", "broker_leads")
    frame = frame[frame["lead_id"].isin(leads)].reset_index(drop=True)
    assert len(frame) > 300 and frame["label"].nunique() == 2
    outcome = train_frame(settings, frame, "lead_scoring_v1", FitOptions(trials=0, max_epochs=5, progress=False),
                          "broker_leads", MODEL, say=lambda _: None)
    MlflowClient().set_registered_model_alias(MODEL, "champion", str(outcome.version))


def monitor(world: dict, *args: str):  # noqa: ANN201 - CompletedProcess
    done = leadscore(["monitor", *args, "--model", MODEL], world["env"], timeout=600)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


def verdicts(stdout: str) -> dict[str, str]:
    """feature -> 'DRIFT' or 'ok' from `monitor drift`'s table."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if line.startswith("  ") and parts and parts[-1] in ("DRIFT", "ok"):
            out[parts[0]] = parts[-1]
    return out


def test_the_simulated_income_shift_is_found_only_after_the_drift_date(world: dict) -> None:
    found = {}
    for era in ("before", "after"):
        since, until = world["windows"][era]
        done = monitor(world, "drift", "--since", since, "--until", until)
        assert done.returncode == 0, done.stdout + done.stderr
        print(era, done.stdout)
        found[era] = verdicts(done.stdout)
    assert found["after"]["annual_income_inr"] == "DRIFT"
    assert found["before"]["annual_income_inr"] == "ok"


def test_the_simulated_concept_drift_shows_in_realized_quality_after_the_drift_date(world: dict) -> None:
    auc, top = {}, {}
    for era in ("before", "after"):
        since, until = world["windows"][era]
        done = monitor(world, "performance", "--since", since, "--until", until, "--maturity", "1s")
        assert done.returncode == 0, done.stdout + done.stderr
        print(era, done.stdout)
        rows = [line.split() for line in done.stdout.splitlines() if line.startswith("  20")]
        test = [line.split() for line in done.stdout.splitlines() if line.startswith("  test")][0]
        auc[era], auc["test"] = float(rows[-1][4]), float(test[1])
        top[era], top["test"] = float(rows[-1][8]), float(test[5])
    # After the drift date conversion follows a fresh intent and affordability counts the other way round
    # (pipelines/simulate_drift.py): fewer of the drifted leads convert, and not the ones the champion ranks first.
    # Seen in three runs: precision in the top decile 0.204, 0.148 and 0.162 against 0.857, 0.810 and 0.810 on the
    # test rows. ROC AUC is no reliable sign here (0.873, 0.891 and 0.888 against 0.919, 0.927 and 0.879): a
    # converting lead's own funnel events (calls, site visits) still show in its behaviour features, so the ranking
    # holds up while the top of it no longer converts. The "before" era is no baseline: its leads are the model's
    # training leads scored weeks after their label times (the train/serve gap of windowed counts,
    # docs/monitoring.md).
    print(auc)
    assert top["after"] < 0.5 * top["test"], top


def test_the_loop_catches_the_simulated_concept_drift_and_promotes_only_through_the_gate(world: dict) -> None:
    import math

    import psycopg
    from mlflow import MlflowClient

    settings, env = world["settings"], world["env"]
    client = MlflowClient(settings.tracking_uri)
    before = client.get_model_version_by_alias(MODEL, "champion").version
    since = datetime.fromisoformat(world["windows"]["gate"][0])
    now = datetime.now(UTC)
    # rounded up: the windows start at most a second before the gate round, two seconds after the round before it
    seconds = f"{math.ceil((now - since).total_seconds())}s"
    done = leadscore(["monitor", "run", "--model", MODEL, "--until", now.isoformat(), "--window", seconds,
                      "--performance-window", seconds, "--maturity", "1s", "--auto-promote", "--cooldown", "1m",
                      "--max-epochs", "5"], env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    with psycopg.connect(settings.pg_dsn()) as conn:
        last = conn.execute("SELECT summary FROM monitoring.results WHERE model_name = %s AND kind = 'decision' "
                            "ORDER BY id DESC LIMIT 1", (MODEL,)).fetchone()[0]
    # caught by the top of the ranking, which the simulator's concept drift empties of converters
    assert any("top-decile precision" in r for r in last["reasons"]), last
    assert last["action"] in ("promoted", "kept") and last["challenger"], last
    gate = last["gate"]
    assert gate["rows"] == len(world["eras"]["gate"]), gate  # the gate is the later round alone, out of time
    print({who: {k: round(v, 4) for k, v in gate[who].items()} for who in ("champion", "challenger")})
    after = client.get_model_version_by_alias(MODEL, "champion").version
    assert (last["action"] == "promoted") == gate["passed"] == (after == last["challenger"] != before), last
    run_id = client.get_model_version(MODEL, last["challenger"]).tags["run_id"]
    with psycopg.connect(settings.pg_dsn()) as conn:  # the challenger learned from none of the gate's leads
        seen = conn.execute("SELECT count(*) FROM monitoring.reference_rows WHERE model_name = %s AND run_id = %s "
                            "AND lead_id = ANY(%s)", (MODEL, run_id, world["eras"]["gate"])).fetchone()[0]
        learned = conn.execute("SELECT count(*) FROM monitoring.reference_rows WHERE model_name = %s AND run_id = %s "
                               "AND lead_id = ANY(%s)", (MODEL, run_id, world["eras"]["after"])).fetchone()[0]
    assert seen == 0 and learned > 0, (seen, learned)
