"""Consent and its withdrawal (CLI and HTTP, scoped keys), the ledger's tamper evidence, erasure and export over
HTTP, and children without parental consent."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest

from tests.integration.privacy.probes import (
    cli,
    get,
    pg_rows,
    redis_keys,
)
from tests.integration.serving_support import post, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_withdrawing_scoring_refuses_it_within_a_second_and_removes_the_online_features(world: dict) -> None:
    from compliance.consent import set_consent
    from pipelines.training_data import build_training_set

    settings, lead = world["settings"], world["withdrawer"]
    assert post(world["url"], "/score", {"lead_id": lead}, world["key"]).status_code == 200
    assert redis_keys(settings, lead)
    set_consent(settings, [lead], "scoring", False, channel="call", recorded_by="it")
    started = time.monotonic()
    wait_for(lambda: post(world["url"], "/score", {"lead_id": lead}, world["key"]).status_code == 403, timeout=1.0,
             every=0.05)
    assert time.monotonic() - started < 1.0
    assert redis_keys(settings, lead) == []  # at once, not at the next materialization
    frame = build_training_set(settings, "lead_scoring_v1", "broker_leads")
    assert lead not in set(frame["lead_id"]) and len(frame) > 100  # out of training sets for that purpose


def test_withdrawing_text_analysis_deletes_messages_and_vectors(world: dict) -> None:
    settings, lead = world["settings"], world["withdrawer"]
    assert pg_rows(settings, lead)["text_store.messages"] > 0
    done = cli(world, "privacy", "consent", "withdraw", lead, "--purpose", "text_analysis", "--channel", "sms")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = pg_rows(settings, lead)
    assert rows["text_store.messages"] == 0 and rows["serving.text_signals"] == 0
    assert rows["offline.lead_engagement"] > 0  # the other purposes' data stays


def test_withdrawing_every_purpose_queues_an_erasure_that_erase_queued_carries_out(world: dict) -> None:
    settings, lead = world["settings"], world["quitter"]
    done = cli(world, "privacy", "consent", "withdraw", lead)  # every purpose
    assert done.returncode == 0 and "erasure queued" in done.stdout, done.stdout + done.stderr
    listed = cli(world, "privacy", "requests")
    assert listed.returncode == 0 and lead in listed.stdout and "queued" in listed.stdout
    carried = cli(world, "privacy", "erase", "--queued")
    assert carried.returncode == 0 and "complete" in carried.stdout, carried.stdout + carried.stderr
    assert not any(pg_rows(settings, lead).values())
    assert lead not in cli(world, "privacy", "requests", "--all").stdout  # the request keeps only the token


def test_the_ledger_detects_an_edited_deleted_or_reordered_entry(world: dict) -> None:
    settings = world["settings"]
    assert cli(world, "privacy", "consent", "grant", "ledger-a", "ledger-b", "--purpose", "marketing_contact",
               "--channel", "web_form").returncode == 0
    ok = cli(world, "privacy", "verify-ledger")
    assert ok.returncode == 0 and "ledger intact" in ok.stdout, ok.stdout + ok.stderr
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        # the tamperer is a database superuser: the append-only triggers (0011) stop everyone else, so it turns
        # them off for its session first; the chain and the signed head must still give it away
        conn.execute("SET session_replication_role = replica")
        last, prev = [r[0] for r in conn.execute(
            "SELECT seq FROM compliance.consent_ledger ORDER BY seq DESC LIMIT 2")]
        middle = last // 2
        tampers = [
            ("edited", f"UPDATE compliance.consent_ledger SET granted = NOT granted WHERE seq = {middle}",
             f"UPDATE compliance.consent_ledger SET granted = NOT granted WHERE seq = {middle}", "was edited"),
            ("reordered", f"UPDATE compliance.consent_ledger SET seq = -1 WHERE seq = {prev}; UPDATE "
             f"compliance.consent_ledger SET seq = {prev} WHERE seq = {last}; UPDATE compliance.consent_ledger SET "
             f"seq = {last} WHERE seq = -1", None, "does not follow"),
        ]
        for name, tamper, undo, says in tampers:
            conn.execute(tamper)
            try:
                bad = cli(world, "privacy", "verify-ledger")
                assert bad.returncode == 1 and says in bad.stderr, (name, bad.stdout + bad.stderr)
            finally:
                conn.execute(undo or tamper)  # a swap undoes itself
        for seq, says in ((middle, "missing (deleted)"), (last, "newest entries were deleted")):
            row = conn.execute("SELECT * FROM compliance.consent_ledger WHERE seq = %s", (seq,)).fetchone()
            conn.execute("DELETE FROM compliance.consent_ledger WHERE seq = %s", (seq,))
            try:
                bad = cli(world, "privacy", "verify-ledger")
                assert bad.returncode == 1 and says in bad.stderr, (seq, bad.stdout + bad.stderr)
            finally:
                conn.execute(f"INSERT INTO compliance.consent_ledger VALUES ({', '.join(['%s'] * len(row))})", row)
    assert cli(world, "privacy", "verify-ledger").returncode == 0  # restored: intact again



def test_consent_over_http_is_scoped_ledgered_and_refuses_unknown_fields(world: dict) -> None:
    url, lead = world["url"], "it-http-consent"
    body = {"lead_ids": [lead], "purpose": "marketing_contact", "granted": True, "channel": "consent_manager"}
    denied = post(url, "/consent", body, world["key"])  # a scoring key
    assert denied.status_code == 403 and "'consent' scope" in denied.json()["reason"], denied.text
    assert post(url, "/consent", body, None).status_code == 401
    done = post(url, "/consent", body, world["consent_key"])
    assert done.status_code == 200 and done.json()["notice_version"] == "lead-processing@1", done.text
    state = get(url, f"/consent/{lead}", world["consent_key"]).json()
    assert state["purposes"]["marketing_contact"]["granted"] is True
    assert state["history"][-1]["channel"] == "consent_manager" and state["history"][-1]["recorded_by"].startswith(
        "api_key:")
    for change, field in (({"purpose": "astrology"}, "purpose"), ({"notice_version": "lead-processing@9"},
                                                                 "notice_version"),
                          ({"channel": "telepathy"}, "channel"), ({"lead_ids": []}, "lead_ids"),
                          ({"lead_ids": ["ok", "bad\u0000id"]}, "lead_ids[1]"), ({"colour": "red"}, "colour")):
        bad = post(url, "/consent", {**body, **change}, world["consent_key"])
        assert bad.status_code == 422, (change, bad.text)
        assert bad.json()["errors"][0]["field"] == field, (change, bad.text)


def test_erasure_and_export_over_http_need_the_privacy_scope(world: dict) -> None:
    settings, url, lead = world["settings"], world["url"], world["exported"]
    assert post(url, "/score", {"lead_id": lead}, world["key"]).status_code == 200
    wait_for(lambda: pg_rows(settings, lead)["serving.prediction_log"] > 0)
    for key in (world["key"], world["consent_key"]):
        assert get(url, f"/privacy/export/{lead}", key).status_code == 403
        assert post(url, "/privacy/erasure", {"lead_ids": [lead]}, key).status_code == 403
    held = {t: n for t, n in pg_rows(settings, lead).items() if n}
    started = time.monotonic()
    export = get(url, f"/privacy/export/{lead}", world["privacy_key"])
    assert export.status_code == 200 and time.monotonic() - started < 5, export.text
    body = export.json()
    assert {t: len(rows) for t, rows in body["stores"].items()} == held  # store by store, row for row
    assert body["held"] and body["online"] and body["consent"]["history"]
    assert body["scores"] and body["scores"][-1]["tenant"] == "default"
    assert body["shared_with"][0]["tenant"] == "default" and body["models_trained_on_it"]
    nothing = get(url, "/privacy/export/it-never-seen", world["privacy_key"]).json()
    assert nothing["held"] is False and "nothing is held" in nothing["note"]
    bad = post(url, "/privacy/erasure", {"lead_ids": ["bad\tid"]}, world["privacy_key"])
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "lead_ids[0]", bad.text
    erased = post(url, "/privacy/erasure", {"lead_ids": [lead]}, world["privacy_key"])
    assert erased.status_code == 200 and erased.json()["receipt"]["complete"], erased.text
    assert not any(pg_rows(settings, lead).values()) and redis_keys(settings, lead) == []



def test_a_child_is_not_scored_without_verified_parental_consent(world: dict, tmp_path) -> None:  # noqa: ANN001
    from pipelines.ingest import ingest_crm
    from pipelines.spec import load_spec

    settings, url = world["settings"], world["url"]
    spec = tmp_path / "it_children.yaml"
    spec.write_text("""
name: it_children
description: a CRM export that tells each lead's age
owner: tests
entity: {column: id}
event_timestamp: {column: at}
consent: {scoring: {default: true, source: test}}
features:
  - {column: age, name: age, type: int, min: 0, max: 120, personal: age}
""", encoding="utf-8")
    export = tmp_path / "children.csv"
    export.write_text(f"id,at,age\nit-kid,{datetime.now(UTC).isoformat()},16\n"
                      f"it-grown,{datetime.now(UTC).isoformat()},30\n", encoding="utf-8")
    ingest_crm(settings, export, load_spec(spec), progress=False)
    with psycopg.connect(settings.pg_dsn()) as conn:
        minors = conn.execute("SELECT lead_id FROM compliance.minors WHERE dataset = 'it_children'").fetchall()
    assert minors == [("it-kid",)]
    body = {"features": {"city": "Pune"}}
    wait_for(lambda: post(url, "/score", {"lead_id": "it-grown", **body}, world["key"]).status_code == 200,
             timeout=2.0, every=0.05)  # the mirror hears of the ingested consent as it commits
    kid = post(url, "/score", {"lead_id": "it-kid", **body}, world["key"])
    assert kid.status_code == 403 and "under 18" in kid.json()["reason"] and "s.9" in kid.json()["reason"]
    done = cli(world, "privacy", "consent", "grant", "it-kid", "--purpose", "parental_consent", "--channel", "call",
               "--by", "dpo@it")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: post(url, "/score", {"lead_id": "it-kid", **body}, world["key"]).status_code == 200,
             timeout=2.0, every=0.05)  # the mirror hears of the parental consent as it commits
    withdrawn = cli(world, "privacy", "consent", "withdraw", "it-kid", "--purpose", "parental_consent")
    assert withdrawn.returncode == 0
    wait_for(lambda: post(url, "/score", {"lead_id": "it-kid", **body}, world["key"]).status_code == 403,
             timeout=2.0, every=0.05)
