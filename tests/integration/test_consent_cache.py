"""The serving consent cache against real Postgres: answers refreshed off the request path, withdrawals seen."""

from __future__ import annotations

import time

import psycopg
import pytest

from infra.config import Settings
from serving.consent import ConsentChecker
from serving.db import Db

pytestmark = [pytest.mark.integration]


def test_refresh_keeps_asked_leads_fresh_and_sees_a_withdrawal(settings: Settings) -> None:
    leads = ["it-consent-a", "it-consent-b"]
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        for lead in leads:
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead,))
        checker = ConsentChecker(Db(settings), ttl_s=1.0)
        refresher = Db(settings)
        assert checker.allowed(leads) == {leads[0]: True, leads[1]: True}  # read on the request path
        first = checker._cache[leads[0]][0]
        conn.execute("UPDATE compliance.consent SET granted = false WHERE lead_id = %s AND purpose = 'scoring'",
                     (leads[0],))
        assert checker.allowed([leads[0]]) == {leads[0]: True}  # still cached: within ttl_s
        time.sleep(0.05)
        assert checker.refresh(refresher) == 2  # both were asked about since the last pass
        assert checker._cache[leads[0]][0] > first
        checker.db = None  # from here the request path cannot query: answers must come from the refresh
        assert checker.allowed(leads) == {leads[0]: False, leads[1]: True}
        assert checker.refresh(refresher) == 2 and checker.refresh(refresher) == 0  # nobody asked since
        time.sleep(1.1)  # not asked, not refreshed: the answers lapse and the request path must read again
        with pytest.raises(AttributeError):
            checker.allowed([leads[1]])
        conn.execute("DELETE FROM compliance.consent WHERE lead_id = ANY(%s)", (leads,))
