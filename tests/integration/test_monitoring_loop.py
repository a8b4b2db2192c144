"""The retraining loop over the real stack: no action while the champion holds up, a worse challenger never
promoted, and concept drift (outcomes that turn around after scoring) caught, retrained, gated and promoted."""

from __future__ import annotations

import psycopg
import pytest
from mlflow import MlflowClient

from infra.config import Settings
from tests.conftest import leadscore
from tests.integration.serving_support import create_key, post, run_ok, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "lead-scorer-loop-it"
DATASET = "xeducation_loop"  # a copy of X Education's labels that this module alone turns around
GATE_LEADS = 3000


@pytest.fixture(scope="module")
def env(stack_env_vars: dict[str, str], settings: Settings, applied_store, tmp_path_factory) -> dict[str, str]:  # noqa: ANN001
    from tests.integration.serving_support import ensure_champion

    ensure_champion(settings, stack_env_vars)
    with psycopg.connect(settings.pg_dsn()) as conn:
        conn.execute("INSERT INTO offline.labels (dataset, lead_id, event_timestamp, label) SELECT %s, lead_id, "
                     "event_timestamp, label FROM offline.labels WHERE dataset = 'xeducation' ON CONFLICT DO NOTHING",
                     (DATASET,))
        leads = [r[0] for r in conn.execute("SELECT lead_id FROM offline.xeducation ORDER BY lead_id")]
    env = {**stack_env_vars, "LEADSCORE_MODEL_NAME": MODEL}
    run_ok(["train", "--feature-service", "xeducation_v1", "--dataset", DATASET, "--trials", "0", "--max-epochs",
            "5", "--model-name", MODEL, "--no-progress"], env)
    run_ok(["promote", "--model-name", MODEL], env)
    key = create_key(env, "it-loop", "--rate", "100000", "--burst", "100000")
    with serving(env, settings.serving_port, tmp_path_factory.mktemp("loop") / "serve.log", model=MODEL) as url:
        for i in range(0, GATE_LEADS, 1500):
            assert post(url, "/rank", {"leads": [{"lead_id": x} for x in leads[i:i + 1500]]}, key).status_code == 200
        import time

        time.sleep(1.0)
    return env


def champion(settings: Settings) -> str:
    return MlflowClient(settings.tracking_uri).get_model_version_by_alias(MODEL, "champion").version


def decisions(settings: Settings) -> list[dict]:
    with psycopg.connect(settings.pg_dsn()) as conn:
        return [r[0] for r in conn.execute("SELECT summary FROM monitoring.results WHERE model_name = %s AND kind = "
                                           "'decision' ORDER BY id", (MODEL,))]


def test_a_champion_that_holds_up_gets_no_action(env, settings: Settings) -> None:  # noqa: ANN001
    before = champion(settings)
    done = leadscore(["monitor", "run", "--model", MODEL, "--window", "1h", "--auto-promote"], env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"decision for {MODEL} v{before}: no_action" in done.stdout, done.stdout
    assert champion(settings) == before and decisions(settings)[-1]["action"] == "no_action"
    with psycopg.connect(settings.pg_dsn()) as conn:
        audit = conn.execute("SELECT detail FROM compliance.audit_log WHERE actor = 'monitor' AND action = "
                             "'monitor_decision' ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert audit["model"] == MODEL and audit["action"] == "no_action"
    tags = MlflowClient(settings.tracking_uri).get_model_version(MODEL, before).tags
    assert tags["monitor.decision"] == "no_action" and "realized_roc_auc" in tags["monitor.figures"]


def test_a_challenger_trained_on_shuffled_labels_is_never_promoted(env, settings: Settings) -> None:  # noqa: ANN001
    from datetime import UTC, datetime, timedelta

    from monitoring.loop import Decision, LoopOptions
    from monitoring.performance import run_performance
    from monitoring.retrain import gate_rows, retrain_and_gate, training_frame
    from monitoring.windows import model_ref

    before = champion(settings)
    ref = model_ref(settings, MODEL)
    now = datetime.now(UTC)
    perf = run_performance(settings, MODEL, now - timedelta(hours=1), now, publish=False)
    rows = gate_rows(settings, ref, perf)
    frame = training_frame(settings, ref, set(rows["lead_id"]))
    frame["label"] = frame["label"].sample(frac=1.0, random_state=0).to_numpy()  # the mapping destroyed
    decision = Decision(MODEL, before, "no_action")
    retrain_and_gate(settings, ref, perf, LoopOptions(auto_promote=True, max_epochs=5), decision, frame=frame)
    assert decision.action == "kept" and not decision.gate["passed"], decision
    assert decision.gate["challenger"]["roc_auc"] < decision.gate["champion"]["roc_auc"]
    assert champion(settings) == before
    tags = MlflowClient(settings.tracking_uri).get_model_version(MODEL, decision.challenger).tags
    assert tags["monitor.status"] == "awaiting approval"


def test_concept_drift_is_caught_retrained_gated_out_of_time_and_promoted(env, settings: Settings) -> None:  # noqa: ANN001
    before = champion(settings)
    with psycopg.connect(settings.pg_dsn()) as conn:  # every outcome turns around, known from now on
        conn.execute("INSERT INTO offline.labels (dataset, lead_id, event_timestamp, label) SELECT dataset, lead_id, "
                     "now(), 1 - label FROM offline.labels WHERE dataset = %s AND event_timestamp < now() - "
                     "interval '1 day'", (DATASET,))
    done = leadscore(["monitor", "run", "--model", MODEL, "--window", "1h", "--auto-promote", "--cooldown", "1m",
                      "--max-epochs", "5"], env, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout)
    last = decisions(settings)[-1]
    assert last["action"] == "promoted", last
    assert any("realized ROC AUC" in r for r in last["reasons"]), last["reasons"]
    gate = last["gate"]
    assert gate["rows"] == GATE_LEADS and gate["passed"]
    assert gate["challenger"]["roc_auc"] > gate["champion"]["roc_auc"] + 0.3
    after = champion(settings)
    assert after == last["challenger"] != before
    client = MlflowClient(settings.tracking_uri)
    assert client.get_model_version(MODEL, after).tags["monitor.status"] == "promoted by the monitor"
    assert client.get_model_version(MODEL, before).tags["promotion.replaced_by"] == after
    # the challenger never saw the gate's leads
    run_id = client.get_model_version(MODEL, after).tags["run_id"]
    with psycopg.connect(settings.pg_dsn()) as conn:
        seen = conn.execute("SELECT count(*) FROM monitoring.reference_rows r JOIN (SELECT DISTINCT lead_id FROM "
                            "serving.prediction_log WHERE model_name = %s AND model_version = %s) g USING (lead_id) "
                            "WHERE r.model_name = %s AND r.run_id = %s", (MODEL, before, MODEL, run_id)).fetchone()[0]
    assert seen == 0
