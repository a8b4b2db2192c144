"""The serving consent answers against real Postgres: the cache refreshed off the request path, and the mirror
kept current by the change announcements."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from infra.config import Settings
from serving.consent import ConsentChecker
from serving.db import Db

pytestmark = [pytest.mark.integration]


def _d(ids: list[str]) -> list[tuple[str, str]]:
    """The default tenant's leads, as the engine asks about them: (tenant, stored id)."""
    return [("default", i) for i in ids]


def test_refresh_keeps_asked_leads_fresh_and_sees_a_withdrawal(settings: Settings) -> None:
    leads = ["it-consent-a", "it-consent-b"]
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        for lead in leads:
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead,))
        checker = ConsentChecker(Db(settings), ttl_s=1.0)
        refresher = Db(settings)
        assert checker.allowed(_d(leads)) == {leads[0]: True, leads[1]: True}  # read on the request path
        first = checker._cache[("default", leads[0])][0]
        conn.execute("UPDATE compliance.consent SET granted = false WHERE lead_id = %s AND purpose = 'scoring'",
                     (leads[0],))
        assert checker.allowed(_d([leads[0]])) == {leads[0]: True}  # still cached: within ttl_s
        time.sleep(0.05)
        assert checker.refresh(refresher) == 2  # both were asked about since the last pass
        assert checker._cache[("default", leads[0])][0] > first
        checker.db = None  # from here the request path cannot query: answers must come from the refresh
        assert checker.allowed(_d(leads)) == {leads[0]: False, leads[1]: True}
        assert checker.refresh(refresher) == 2 and checker.refresh(refresher) == 0  # nobody asked since
        time.sleep(1.1)  # not asked, not refreshed: the answers lapse and the request path must read again
        with pytest.raises(AttributeError):
            checker.allowed(_d([leads[1]]))
        conn.execute("DELETE FROM compliance.consent WHERE lead_id = ANY(%s)", (leads,))


def _wait(predicate, timeout: float = 5.0) -> float:  # noqa: ANN001
    """Seconds until predicate() held (fails the test past timeout)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "not seen in time"
        time.sleep(0.01)
    return time.monotonic() - start


def _set(conn: psycopg.Connection, leads: list[str], granted: bool, expires: datetime | None = None) -> None:
    conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source, expires_at) "
                 "SELECT unnest(%s::text[]), 'scoring', %s, 'test', %s::timestamptz "
                 "ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = excluded.granted, "
                 "expires_at = excluded.expires_at", (leads, granted, expires))


def test_the_mirror_answers_without_queries_and_follows_each_committed_change(settings: Settings) -> None:
    one, few, many = ["it-mirror-1"], [f"it-mirror-f{i}" for i in range(3)], [f"it-mirror-m{i}" for i in range(150)]
    everyone = one + few + many
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("DELETE FROM compliance.consent WHERE lead_id = ANY(%s)", (everyone,))
        _set(conn, one + few, True)
        checker = ConsentChecker(Db(settings), ttl_s=2.0)
        checker.follow(settings.pg_dsn())
        try:
            _wait(lambda: checker.live)
            checker.db = None  # from here any query on the request path would raise
            assert checker.allowed(_d(one + few + many[:1])) == {**dict.fromkeys(one + few, True), many[0]: False}
            _set(conn, one, False)  # a withdrawal: one lead, its id in the announcement
            took = _wait(lambda: checker.allowed(_d(one)) == {one[0]: False})
            assert took < 1.0, f"a withdrawal took {took:.2f} s to reach the mirror"
            _set(conn, many, True)  # more than 100 in one statement: announced as "re-read everything"
            _wait(lambda: all(checker.allowed(_d(many)).values()))
            with conn.transaction():  # not committed yet: not seen
                _set(conn, few[:1], False)
                time.sleep(0.3)
                assert checker.allowed(_d(few[:1])) == {few[0]: True}
            _wait(lambda: checker.allowed(_d(few[:1])) == {few[0]: False})
            conn.execute("DELETE FROM compliance.consent WHERE lead_id = %s", (few[1],))  # erased with its lead
            _wait(lambda: checker.allowed(_d(few[1:2])) == {few[1]: False})
            # an expiry lapses in the mirror with no change announced
            _set(conn, few[2:], True, expires=datetime.now(UTC) + timedelta(seconds=1))
            _wait(lambda: checker.allowed(_d(few[2:])) == {few[2]: True})
            _wait(lambda: checker.allowed(_d(few[2:])) == {few[2]: False}, timeout=3.0)
            assert checker.live
        finally:
            checker.stop()
            conn.execute("DELETE FROM compliance.consent WHERE lead_id = ANY(%s)", (everyone,))


def test_a_mirror_not_confirmed_within_the_ttl_is_not_trusted(settings: Settings) -> None:
    lead = "it-mirror-stale"
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        _set(conn, [lead], True)
        checker = ConsentChecker(Db(settings), ttl_s=0.5)
        checker.follow(settings.pg_dsn())
        try:
            _wait(lambda: checker.live)
            checker.stop()  # the listener stops confirming, as when its connection is lost
            time.sleep(0.7)
            assert not checker.live
            checker.db = None
            with pytest.raises(AttributeError):  # the request path reads Postgres again (here: cannot)
                checker.allowed(_d([lead]))
        finally:
            conn.execute("DELETE FROM compliance.consent WHERE lead_id = %s", (lead,))


def test_too_many_consents_to_mirror_leave_the_cache_to_answer(settings: Settings) -> None:
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        _set(conn, ["it-mirror-cap-a", "it-mirror-cap-b"], True)
        try:
            checker = ConsentChecker(Db(settings), ttl_s=2.0, mirror_max=1)
            checker._follow(settings.pg_dsn())  # returns at once: nothing mirrored
            assert not checker.live and checker._mirror is None
            assert checker.allowed(_d(["it-mirror-cap-a"])) == {"it-mirror-cap-a": True}  # read on the request path
        finally:
            conn.execute("DELETE FROM compliance.consent WHERE lead_id LIKE 'it-mirror-cap-%'")


def test_the_serving_login_reads_one_tenant_at_a_time_and_a_forged_id_finds_nothing(settings: Settings) -> None:
    """Row-level security under the scoring path's own login (migration 0025): a read names its tenant, and sees
    that tenant's rows only; the mirror loaded through that login answers a lead only in its own tenant."""
    acme, beta = "it-rls-acme/L-1", "it-rls-beta/L-1"
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        _set(conn, [acme, beta], True)
    try:
        with psycopg.connect(settings.pg_dsn(role="serving"), autocommit=True) as conn:
            ask = "SELECT lead_id FROM compliance.consent WHERE lead_id = ANY(%s) AND purpose = 'scoring'"
            assert conn.execute(ask, ([acme, beta],)).fetchall() == []  # no tenant named: no row
            with Db.tenant(conn, "it-rls-beta"):  # beta asks for acme's stored id too: only its own comes back
                assert conn.execute(ask, ([acme, beta],)).fetchall() == [(beta,)]
            with Db.tenant(conn, "it-rls-acme"):
                assert conn.execute(ask, ([acme, beta],)).fetchall() == [(acme,)]
            tenants = {r[0] for r in conn.execute("SELECT serving.scoring_tenants()")}
            assert {"it-rls-acme", "it-rls-beta"} <= tenants
        checker = ConsentChecker(Db(settings, role="serving"), ttl_s=5.0)
        assert checker.allowed([("it-rls-beta", acme), ("it-rls-beta", beta)]) == {acme: False, beta: True}
        checker.follow(settings.pg_dsn(role="serving"))
        try:
            _wait(lambda: checker.live, timeout=30.0)
            checker.db = None  # the mirror answers
            assert checker.allowed([("it-rls-acme", acme)]) == {acme: True}
            assert checker.allowed([("it-rls-beta", acme)]) == {acme: False}  # acme's lead asked in beta
        finally:
            checker.stop()
    finally:
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
            conn.execute("DELETE FROM compliance.consent WHERE lead_id = ANY(%s)", ([acme, beta],))
