"""DPDP rights end to end on a private stack: a lead in every store (ingested, streamed with messages, scored by
the real service, in a model's lineage and monitoring reference, in its MLflow held-out rows) is erased, and every
store is then probed by queries of this module's own: every table of every schema with a lead column (found from
information_schema, and every text column of every table scanned for the id), every Redis key (SCAN), every MLflow
artifact file, every changelog topic; a replay of the topics by a new worker group does not bring it back.

Private: erasure and withdrawal change leads other modules count on the session stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest

from infra.config import REPO_ROOT, Settings
from tests.conftest import leadscore, private_stack
from tests.integration.serving_support import create_key, post, run_ok, serving, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "lead-scorer-privacy-it"
SYSTEM = ("pg_catalog", "information_schema", "pg_toast")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:  # noqa: ANN001
    """Simulated broker leads ingested and streamed, a model trained and champion, the service up; yields it all."""
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
        with serving(env, settings.serving_port, root / "serve.log", model=MODEL) as url:
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
def pg_rows(settings: Settings, lead: str) -> dict[str, int]:
    """table -> rows whose lead_id is `lead`, over every table with a lead_id column in the product's database."""
    with psycopg.connect(settings.pg_dsn()) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.columns JOIN "
                              "information_schema.tables USING (table_schema, table_name) WHERE column_name = "
                              "'lead_id' AND table_type = 'BASE TABLE' AND table_schema <> ALL(%s)",
                              (list(SYSTEM),)).fetchall()
        return {f"{s}.{t}": conn.execute(f'SELECT count(*) FROM "{s}"."{t}" WHERE lead_id = %s',
                                         (lead,)).fetchone()[0] for s, t in tables}


def pg_mentions(settings: Settings, lead: str, database: str | None = None) -> dict[str, int]:
    """table.column -> rows whose text or JSON contains `lead` anywhere, over every table of a database."""
    out = {}
    with psycopg.connect(settings.pg_dsn(database)) as conn:
        cols = conn.execute("SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
                            "JOIN information_schema.tables t USING (table_schema, table_name) WHERE t.table_type = "
                            "'BASE TABLE' AND c.table_schema <> ALL(%s) AND c.data_type IN ('text', "
                            "'character varying', 'jsonb', 'json')", (list(SYSTEM),)).fetchall()
        for s, t, c in cols:
            n = conn.execute(f'SELECT count(*) FROM "{s}"."{t}" WHERE strpos("{c}"::text, %s) > 0',
                             (lead,)).fetchone()[0]
            if n:
                out[f"{s}.{t}.{c}"] = n
    return out


def redis_keys(settings: Settings, lead: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(settings.redis_url())
    try:
        return [k for k in client.scan_iter(count=1000) if lead.encode() in k]
    finally:
        client.close()


def artifact_files(settings: Settings, lead: str) -> list[str]:
    """MLflow artifact files (on disk, under the server's artifact root) that hold the id, parquet read as tables."""
    found = []
    for path in (settings.state_dir / "mlflow" / "artifacts").rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            if any(frame[c].astype(str).str.contains(lead, regex=False).any() for c in frame.columns):
                found.append(str(path))
        elif lead.encode() in path.read_bytes():
            found.append(str(path))
    return found


def changelog_state(settings: Settings, lead: str) -> dict[str, bool]:
    """changelog topic -> whether the lead's latest record there is live state (not a tombstone)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def read() -> dict[str, bool]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        topics = [t for t in await admin.list_topics() if t.endswith("-changelog")]
        await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            state: dict[str, bool] = {}
            for tp in parts:
                while await consumer.position(tp) < ends[tp]:
                    for rec in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                        if rec.key == lead.encode():
                            state[tp.topic] = rec.value is not None
            return state
        finally:
            await consumer.stop()

    return asyncio.run(read())


def cli(world: dict, *args: str):  # noqa: ANN201 - CompletedProcess
    return leadscore(list(args), world["env"], timeout=300)


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


def test_bad_input_is_one_clear_line(world: dict) -> None:
    unknown = cli(world, "privacy", "erase", "never-seen-lead")
    assert unknown.returncode == 0 and "nothing was held" in unknown.stdout, unknown.stdout + unknown.stderr
    with psycopg.connect(world["settings"].pg_dsn()) as conn:  # still audited
        assert conn.execute("SELECT count(*) FROM compliance.audit_log WHERE action = 'erase'").fetchone()[0] >= 1
    for args, says in ((["privacy", "erase", "bad\tid"], "lead_ids[0]"),
                       (["privacy", "erase"], "give lead ids"),
                       (["privacy", "consent", "grant", "x", "--purpose", "astrology"], "purpose: unknown purpose"),
                       (["privacy", "consent", "grant", "x", "--notice", "lead-processing@9"],
                        "notice_version: unknown notice version"),
                       (["privacy", "receipt", "er_nope"], "no erasure receipt"),
                       (["privacy", "verify-receipt", str(world["root"] / "missing.json")], "not a saved receipt")):
        done = cli(world, *args)
        assert done.returncode == 1, (args, done.stdout + done.stderr)
        assert says in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _get(url: str, path: str, key: str):  # noqa: ANN202 - httpx.Response
    import httpx

    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_consent_over_http_is_scoped_ledgered_and_refuses_unknown_fields(world: dict) -> None:
    url, lead = world["url"], "it-http-consent"
    body = {"lead_ids": [lead], "purpose": "marketing_contact", "granted": True, "channel": "consent_manager"}
    denied = post(url, "/consent", body, world["key"])  # a scoring key
    assert denied.status_code == 403 and "'consent' scope" in denied.json()["reason"], denied.text
    assert post(url, "/consent", body, None).status_code == 401
    done = post(url, "/consent", body, world["consent_key"])
    assert done.status_code == 200 and done.json()["notice_version"] == "lead-processing@1", done.text
    state = _get(url, f"/consent/{lead}", world["consent_key"]).json()
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
        assert _get(url, f"/privacy/export/{lead}", key).status_code == 403
        assert post(url, "/privacy/erasure", {"lead_ids": [lead]}, key).status_code == 403
    held = {t: n for t, n in pg_rows(settings, lead).items() if n}
    started = time.monotonic()
    export = _get(url, f"/privacy/export/{lead}", world["privacy_key"])
    assert export.status_code == 200 and time.monotonic() - started < 5, export.text
    body = export.json()
    assert {t: len(rows) for t, rows in body["stores"].items()} == held  # store by store, row for row
    assert body["held"] and body["online"] and body["consent"]["history"]
    assert body["scores"] and body["scores"][-1]["tenant"] == "it-privacy"
    assert body["shared_with"][0]["tenant"] == "it-privacy" and body["models_trained_on_it"]
    nothing = _get(url, "/privacy/export/it-never-seen", world["privacy_key"]).json()
    assert nothing["held"] is False and "nothing is held" in nothing["note"]
    bad = post(url, "/privacy/erasure", {"lead_ids": ["bad\tid"]}, world["privacy_key"])
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "lead_ids[0]", bad.text
    erased = post(url, "/privacy/erasure", {"lead_ids": [lead]}, world["privacy_key"])
    assert erased.status_code == 200 and erased.json()["receipt"]["complete"], erased.text
    assert not any(pg_rows(settings, lead).values()) and redis_keys(settings, lead) == []


def test_a_correction_is_a_new_row_refreshed_online_audited_and_checked(world: dict) -> None:
    import redis

    from pipelines.redis_codec import EntityKeyCodec, decode_value, field_key

    settings, lead = world["settings"], world["corrected"]
    done = cli(world, "privacy", "correct", lead, "--set", "annual_income_inr=1234567", "--set", "city=Kochi",
               "--by", "dpo@it")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "annual_income_inr" in done.stdout and "-> 1234567.0" in done.stdout
    with psycopg.connect(settings.pg_dsn()) as conn:
        rows = conn.execute("SELECT annual_income_inr, city FROM offline.lead_demographics WHERE lead_id = %s "
                            "ORDER BY event_timestamp", (lead,)).fetchall()
        audit = conn.execute("SELECT actor, detail FROM compliance.audit_log WHERE lead_id = %s AND action = "
                             "'correct'", (lead,)).fetchall()
        request = conn.execute("SELECT status FROM compliance.requests WHERE lead_id = %s AND kind = 'correction'",
                               (lead,)).fetchall()
    assert len(rows) >= 2 and rows[-1] == (1234567.0, "Kochi") and rows[0] != rows[-1]  # history kept, new row last
    assert audit == [("dpo@it", {"table": "offline.lead_demographics", "fields": ["annual_income_inr", "city"]})]
    assert request == [("done",)]
    client = redis.Redis.from_url(settings.redis_url())
    try:
        raw = client.hget(EntityKeyCodec("lead_id", "leadscore").key(lead),
                          field_key("lead_demographics", "annual_income_inr"))
    finally:
        client.close()
    assert decode_value(raw) == 1234567.0  # the online store serves the corrected value
    for args, says in ((["--set", "annual_income_inr=-5"], "outside"), (["--set", "city_tier=7"], "outside"),
                       (["--set", "shoe_size=9"], "no dataset has"), (["--set", "nonsense"], "not field=value"),
                       (["--set", "phone=1"], "no dataset has")):
        bad = cli(world, "privacy", "correct", lead, *args)
        assert bad.returncode == 1 and says in bad.stderr, (args, bad.stdout + bad.stderr)
    unknown = cli(world, "privacy", "correct", "it-never-seen", "--set", "city=Pune")
    assert unknown.returncode == 1 and "nothing to correct" in unknown.stderr


def test_requests_have_due_dates_and_overdue_ones_are_listed(world: dict) -> None:
    settings = world["settings"]
    done = cli(world, "privacy", "request", "grievance", "it-grieving", "--detail", "called after I opted out")
    assert done.returncode == 0, done.stdout + done.stderr
    request_id = done.stdout.split()[1]
    with psycopg.connect(settings.pg_dsn()) as conn:
        due, received = conn.execute("SELECT due_at, received_at FROM compliance.requests WHERE request_id = %s",
                                     (request_id,)).fetchone()
        assert (due - received).days == 90  # grievances: 90 days
        conn.execute("UPDATE compliance.requests SET due_at = now() - interval '1 day' WHERE request_id = %s",
                     (request_id,))
    overdue = cli(world, "privacy", "requests", "--overdue")
    assert overdue.returncode == 1 and request_id in overdue.stdout
    closed = cli(world, "privacy", "close", request_id, "--note", "apologised, suppressed")
    assert closed.returncode == 0 and request_id not in cli(world, "privacy", "requests", "--overdue").stdout
    bad = cli(world, "privacy", "request", "complaint", "it-grieving")
    assert bad.returncode == 1 and "kind: unknown request kind" in bad.stderr


def test_retention_notifies_48_hours_before_and_erases_only_after(world: dict, tmp_path) -> None:  # noqa: ANN001
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    settings = world["settings"]
    received: list[dict] = []

    class Crm(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = HTTPServer(("127.0.0.1", 0), Crm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**world["env"], "LEADSCORE_PRIVACY_NOTICE_WEBHOOK": f"http://127.0.0.1:{server.server_port}/notices"}
    now = datetime.now(UTC)
    last = now - timedelta(days=730)
    idle, back = "it-ret-idle", "it-ret-back"
    with psycopg.connect(settings.pg_dsn()) as conn:
        for lead in (idle, back):
            conn.execute("INSERT INTO offline.lead_demographics (lead_id, event_timestamp, city) VALUES (%s, %s, "
                         "'Pune')", (lead, last))
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'it')", (lead,))
        conn.execute("INSERT INTO serving.prediction_log (at, endpoint, request_id, key_id, tenant, lead_id, "
                     "model_name, model_version, feature_service, score, tier) VALUES (%s, 'score', 'old', 'k', 't', "
                     "'it-ret-log', 'm', '1', 'fs', 0.5, 'B'), (%s, 'score', 'new', 'k', 't', 'it-ret-log', 'm', "
                     "'1', 'fs', 0.5, 'B')", (now - timedelta(days=30), now - timedelta(hours=1)))
    t1 = last + timedelta(days=1095) - timedelta(hours=47)  # the deadline is 47 hours away: inside the notice period

    def run(at: datetime, *extra: str) -> str:
        done = leadscore(["privacy", "retention", "--now", at.isoformat(), *extra], env, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def notices() -> list[tuple]:
        with psycopg.connect(settings.pg_dsn()) as conn:
            return conn.execute("SELECT lead_id, status, erase_after, delivered FROM compliance.retention_notices "
                                "WHERE lead_id = ANY(%s) OR lead_id IS NULL ORDER BY noticed_at",
                                ([idle, back],)).fetchall()

    try:
        assert "2 notice(s)" in run(t1, "--dry-run") and notices() == [] and not received  # nothing written
        assert "2 notice(s), 0 cancelled (active again), 0 erased" in run(t1)
        found = notices()
        assert {n[0] for n in found} == {idle, back} and all(n[1] == "notified" and n[3] for n in found)
        assert all(n[2] == t1 + timedelta(hours=48) for n in found)  # never sooner than 48 hours after the notice
        assert sorted(r["lead_id"] for r in received) == [back, idle] and "48 hours" in received[0]["text"]
        listed = leadscore(["privacy", "notices"], env)
        assert idle in listed.stdout and back in listed.stdout
        assert "0 notice(s), 0 cancelled (active again), 0 erased" in run(t1 + timedelta(hours=47))
        assert pg_rows(settings, idle)["offline.lead_demographics"] == 1  # not before the 48 hours
        with psycopg.connect(settings.pg_dsn()) as conn:  # the other lead comes back after its notice
            conn.execute("INSERT INTO offline.lead_demographics (lead_id, event_timestamp, city) VALUES (%s, %s, "
                         "'Pune')", (back, t1 + timedelta(hours=1)))
        out = run(t1 + timedelta(hours=49))
        assert "0 notice(s), 1 cancelled (active again), 1 erased" in out, out
        assert not any(pg_rows(settings, idle).values())
        assert pg_rows(settings, back)["offline.lead_demographics"] == 2
        assert {(n[0], n[1]) for n in notices()} == {(back, "cancelled"), (None, "erased")}  # proof kept, id gone
        with psycopg.connect(settings.pg_dsn()) as conn:  # a year later by this clock: the 30-day-old row is past
            kept = [r[0] for r in conn.execute("SELECT request_id FROM serving.prediction_log WHERE lead_id = "
                                               "'it-ret-log'")]
        assert kept == ["new"]
    finally:
        server.shutdown()


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
