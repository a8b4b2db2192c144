"""Drift caused by `leadscore simulate`, whose truth is known, found by the monitor end to end: simulated leads
ingested, their events streamed through a real worker, a model trained on the leads from before the drift, the
leads served by the real service, then `leadscore monitor drift` and `monitor performance`.

The leads created from the drift date on are 1.8x richer (covariate shift) and convert by a hidden intent unrelated
to their behaviour (concept drift). This module runs on a private stack of its own (its own state directory and
ports): it writes broker leads that other modules read from the session stack.
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
        eras = {"before": sorted(set(consenting["lead_id"]) & before),
                "after": sorted(set(consenting["lead_id"]) - before)}
        key = create_key(env, "it-simulated", "--rate", "100000", "--burst", "100000")
        windows = {}
        with serving(env, settings.serving_port, root / "serve.log", model=MODEL) as url:
            for era, leads in eras.items():
                since = datetime.now(UTC)
                reply = post(url, "/rank", {"leads": [{"lead_id": lead} for lead in leads]}, key)
                assert reply.status_code == 200, reply.text
                time.sleep(1.0)
                windows[era] = (since.isoformat(), datetime.now(UTC).isoformat())
        yield {"env": env, "settings": settings, "windows": windows}


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
    for era, (since, until) in world["windows"].items():
        done = monitor(world, "drift", "--since", since, "--until", until)
        assert done.returncode == 0, done.stdout + done.stderr
        print(era, done.stdout)
        found[era] = verdicts(done.stdout)
    assert found["after"]["annual_income_inr"] == "DRIFT"
    assert found["before"]["annual_income_inr"] == "ok"


def test_the_simulated_concept_drift_shows_in_realized_quality_after_the_drift_date(world: dict) -> None:
    auc, top = {}, {}
    for era, (since, until) in world["windows"].items():
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
