"""Erasure end to end: a lead in every store (ingested, streamed with messages, scored by the real service, in a
model's lineage and monitoring reference, in its MLflow held-out rows) is erased, then every store is probed by
queries of the tests' own (probes.py); a replay of the topics by a new worker group does not bring it back; the
receipt verifies offline, a tampered one does not; the champion's erasure debt is a gauge.

The first module of the package: the debt gauge counts the one lead erased here."""

from __future__ import annotations

import json

import psycopg
import pytest

from infra.config import Settings
from tests.integration.privacy.probes import (
    MODEL,
    artifact_files,
    changelog_state,
    cli,
    pg_mentions,
    pg_rows,
    redis_keys,
)
from tests.integration.serving_support import post, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_erased_lead_is_gone_from_every_store_and_a_replay_does_not_bring_it_back(world: dict) -> None:
    from pipelines.demo_stream import landed, start_worker, stop_worker
    from tests.conftest import free_ports

    settings, lead = world["settings"], world["target"]
    regranted = cli(world, "privacy", "consent", "grant", lead, "--purpose", "text_analysis", "--channel", "call")
    assert regranted.returncode == 0, regranted.stdout + regranted.stderr
    scored = post(world["url"], "/score", {"lead_id": lead}, world["key"])
    assert scored.status_code == 200, scored.text
    wait_for(lambda: pg_rows(settings, lead)["serving.prediction_log"] > 0)
    before = pg_rows(settings, lead)
    held = {t for t, n in before.items() if n}
    assert held >= {"offline.lead_demographics", "offline.lead_engagement", "offline.labels", "compliance.consent",
                    "text_store.messages", "serving.prediction_log", "serving.text_signals",
                    "monitoring.reference_rows", "compliance.audit_log", "compliance.consent_ledger"}, before
    assert redis_keys(settings, lead) and artifact_files(settings, lead)
    assert any(changelog_state(settings, lead).values())

    receipt_file = world["root"] / "receipt.json"
    done = cli(world, "privacy", "erase", lead, "--by", "dpo@it", "--out", str(receipt_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"model {MODEL} version {world['version']}" in done.stdout  # which versions held the lead

    after = pg_rows(settings, lead)
    assert not any(after.values()), {t: n for t, n in after.items() if n}
    assert pg_mentions(settings, lead) == {}  # not in any text or JSON column of any table either
    assert pg_mentions(settings, lead, settings.mlflow_db) == {}  # nor in MLflow's own database
    assert redis_keys(settings, lead) == []
    assert artifact_files(settings, lead) == []
    assert not any(changelog_state(settings, lead).values())
    with psycopg.connect(settings.pg_dsn()) as conn:  # the legal year's records are kept, pseudonymised
        kept = conn.execute("SELECT count(*), count(features) FROM serving.prediction_log WHERE lead_id LIKE 'tok_%'"
                            ).fetchone()
    assert kept[0] >= before["serving.prediction_log"] and kept[1] == 0

    receipt = json.loads(receipt_file.read_text())["receipt"]
    stores = {s["store"]: s for s in receipt["stores"]}
    assert receipt["complete"] and all(s["after"] == 0 for s in stores.values())
    for table in held - {"compliance.audit_log"}:
        assert stores[f"postgres:{table}"]["before"] == before[table], table
    assert stores["redis:online"]["before"] == 1 and stores["mlflow:artifacts"]["before"] >= 1
    assert stores["kafka:changelog"]["before"] == 1

    # a replay: a new consumer group reads every topic from the start, the erased lead's events among them
    port = free_ports(1)[0]
    env_b = {**world["env"], "LEADSCORE_STREAM_GROUP": "privacy-it-b"}
    worker = start_worker(Settings.load(env_b), port, world["root"] / "worker-b.log")
    try:
        wait_for(lambda: landed(port) >= len(world["events"]), timeout=300)
    finally:
        stop_worker(worker)
    replayed = pg_rows(settings, lead)
    assert not any(replayed.values()), {t: n for t, n in replayed.items() if n}
    assert redis_keys(settings, lead) == [] and not any(changelog_state(settings, lead).values())
    log = (world["root"] / "worker-b.log").read_text(errors="replace")
    assert lead not in log  # nor named in the worker's log

    # and re-ingesting the old export skips its row
    from pipelines.ingest import ingest_crm

    again = ingest_crm(settings, world["export"], world["spec"], progress=False)
    assert again.rows_erased == 1 and not any(pg_rows(settings, lead).values())


def test_the_receipt_verifies_offline_and_a_tampered_receipt_does_not(world: dict) -> None:
    receipt_file = world["root"] / "receipt.json"
    if not receipt_file.exists():
        pytest.skip("the erasure test did not run")
    ok = cli(world, "privacy", "verify-receipt", str(receipt_file))
    assert ok.returncode == 0 and "signature verified" in ok.stdout, ok.stdout + ok.stderr
    saved = json.loads(receipt_file.read_text())
    shown = cli(world, "privacy", "receipt", saved["receipt"]["request_id"])
    assert shown.returncode == 0 and "signature verified" in shown.stdout, shown.stdout + shown.stderr
    for change in ({"complete": True, "leads": 2}, {"stores": saved["receipt"]["stores"][:-1]}):
        tampered = world["root"] / "tampered.json"
        tampered.write_text(json.dumps({"receipt": {**saved["receipt"], **change}, "signature": saved["signature"]}))
        bad = cli(world, "privacy", "verify-receipt", str(tampered))
        assert bad.returncode == 1 and "does NOT verify" in bad.stderr, bad.stdout + bad.stderr


def test_the_champions_erasure_debt_is_a_gauge(world: dict) -> None:
    from monitoring.metrics import MonitorCollector

    families = {f.name: f for f in MonitorCollector(world["settings"], [MODEL]).collect()}
    samples = families["leadscore_monitor_erasure_debt_leads"].samples
    assert [(s.labels["version"], s.value) for s in samples] == [(world["version"], 1.0)]  # the lead erased above
