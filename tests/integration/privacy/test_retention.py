"""Correction, principal requests with due dates, retention with a controlled clock, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.conftest import leadscore
from tests.integration.privacy.probes import (
    cli,
    pg_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
