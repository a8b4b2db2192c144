"""The privacy tests' world: one private stack for the package (erasure and withdrawal change leads other modules
count on the session stack), with simulated broker leads ingested and streamed through a real worker, a champion
trained on them and the real service up."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from infra.config import REPO_ROOT, Settings
from tests.conftest import private_stack
from tests.integration.privacy.probes import MODEL
from tests.integration.serving_support import create_key, run_ok, serving, wait_for


@pytest.fixture(scope="package")
def world(tmp_path_factory) -> dict:  # noqa: ANN001
    """Simulated broker leads ingested and streamed, a model trained and champion, the service up, for every module
    of this package (one private stack); yields it all."""
    from pipelines.demo_stream import landed, start_worker, stop_worker
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.simulate import generate_events, generate_profiles, produce
    from pipelines.spec import load_spec
    from pipelines.streams.topics import ensure_topics
    from tests.conftest import free_ports

    root = tmp_path_factory.mktemp("privacy")
    with private_stack(root / "state", LEADSCORE_MODEL_NAME=MODEL) as env:
        settings = Settings.load(env)
        run_ok(["features", "apply"], env)
        end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        profiles, intent = generate_profiles(700, 31, end - timedelta(days=10), 10)
        events = generate_events(profiles, intent, 10, 31, end)
        raw = list(events)
        export = root / "broker_leads.csv"
        profiles.to_csv(export, index=False)
        spec = load_spec(REPO_ROOT / "feature_repo/datasets/broker_leads.yaml")
        ingest_crm(settings, export, spec, progress=False)
        ensure_topics(settings)
        port = free_ports(1)[0]
        env_worker = {**env, "LEADSCORE_STREAM_GROUP": "privacy-it-a"}
        os.environ.update(env_worker)
        worker = start_worker(Settings.load(env_worker), port, root / "worker-a.log")
        try:
            sent = produce(settings.kafka_bootstrap, raw, None, progress=False)
            wait_for(lambda: landed(port) >= sent, timeout=300)
        finally:
            stop_worker(worker)
        materialize(settings, ["lead_demographics"])
        version, holdout = _train(settings)
        texted = _leads_with_text(settings)
        candidates = [lead for lead in holdout if lead in texted]
        assert len(candidates) >= 5, "the simulated holdout has too few leads with stored message text"
        target, withdrawer, quitter, exported, corrected = candidates[:5]
        with psycopg.connect(settings.pg_dsn()) as conn:  # as the re-ranker's fit writes it
            conn.execute("INSERT INTO serving.text_signals (lead_id, signal, n_messages, reranker_version) "
                         "SELECT unnest(%s::text[]), 0.5, 1, 'it'", ([target, withdrawer],))
        key = create_key(env, "it-privacy", "--rate", "100000", "--burst", "100000")
        # the service's privacy routes log in as leadscore_privacy (migration 0021): with the owner's password
        # wrong, any route still on the owner's login would answer 503 in the tests over HTTP
        no_owner = {**env, "LEADSCORE_PG_PASSWORD": "not-the-owners-password"}
        with serving(no_owner, settings.serving_port, root / "serve.log", model=MODEL) as url:
            yield {"env": env, "settings": settings, "root": root, "url": url, "key": key, "version": version,
                   "target": target, "withdrawer": withdrawer, "quitter": quitter, "exported": exported,
                   "corrected": corrected,
                   "consent_key": create_key(env, "it-crm", "--scope", "consent"),
                   "privacy_key": create_key(env, "it-dpo", "--scope", "privacy"), "events": raw,
                   "export": export, "spec": spec}


def _train(settings: Settings) -> tuple[str, list[str]]:
    """A small champion on lead_scoring_v1; its version and held-out lead ids."""
    from mlflow import MlflowClient

    from models.fit import FitOptions
    from models.train import configure_mlflow, train_frame
    from pipelines.training_data import build_training_set

    configure_mlflow(settings)
    frame = build_training_set(settings, "lead_scoring_v1", "broker_leads")
    outcome = train_frame(settings, frame, "lead_scoring_v1", FitOptions(trials=0, max_epochs=3, progress=False,
                                                                         members=("linear", "lightgbm")),
                          "broker_leads", MODEL, say=lambda _: None)
    MlflowClient().set_registered_model_alias(MODEL, "champion", str(outcome.version))
    return str(outcome.version), outcome.result.split.test["lead_id"].astype(str).tolist()


def _leads_with_text(settings: Settings) -> set[str]:
    with psycopg.connect(settings.pg_dsn()) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT lead_id FROM text_store.messages WHERE text IS NOT NULL")}


# --- independent probes: none of them uses compliance/ ---
