"""The materialization scheduler: runs on an interval, never overlaps, keeps going after a failed run."""

from __future__ import annotations

import pytest

from infra.config import Settings
from pipelines.materialize import _LOCK_KEY, materialize
from tests.conftest import leadscore

pytestmark = pytest.mark.integration


def test_a_second_runner_is_refused_while_one_holds_the_lock(settings: Settings, applied_store) -> None:  # noqa: ANN001
    import psycopg

    with psycopg.connect(settings.pg_dsn(), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        with pytest.raises(RuntimeError, match="another materialization is running"):
            materialize(settings, ["lead_demographics"])
        holder.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    assert materialize(settings, ["lead_demographics"])[0].feature_view == "lead_demographics"


def test_every_keeps_going_after_failed_runs_and_logs_each(stack_env_vars: dict[str, str], applied_store) -> None:  # noqa: ANN001
    done = leadscore(["materialize", "--every", "1s", "--runs", "2", "--view", "no_such_view"], stack_env_vars)
    assert done.returncode == 0, done.stderr
    failures = [ln for ln in done.stderr.splitlines() if "materialize failed" in ln]
    assert len(failures) == 2 and "unknown feature view(s) ['no_such_view']" in failures[0]
    ok = leadscore(["materialize", "--every", "1s", "--runs", "1", "--view", "lead_demographics"], stack_env_vars)
    assert ok.returncode == 0 and "materialize ok" in ok.stderr


def test_a_bad_interval_is_a_usage_error(stack_env_vars: dict[str, str]) -> None:
    done = leadscore(["materialize", "--every", "soon"], stack_env_vars)
    assert done.returncode == 2 and "'soon' is not an interval like 30s, 15m or 1h" in done.stderr


def test_a_view_whose_dataset_was_never_ingested_is_skipped_or_named(settings: Settings, applied_store) -> None:  # noqa: ANN001
    import psycopg

    from pipelines.materialize import materialize

    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        present = conn.execute("SELECT to_regclass('offline.health_insurance')").fetchone()[0] is not None
        if present:  # hide it for this test: the view's table is what a never-ingested dataset lacks
            conn.execute("ALTER TABLE offline.health_insurance RENAME TO health_insurance_hidden")
        try:
            results = {r.feature_view: r for r in materialize(settings)}
            assert "no table offline.health_insurance" in results["health_insurance"].note
            assert results["lead_demographics"].note == ""  # a table from the migrations: always there
            with pytest.raises(ValueError, match="ingest its dataset first"):
                materialize(settings, ["health_insurance"])
        finally:
            if present:
                conn.execute("ALTER TABLE offline.health_insurance_hidden RENAME TO health_insurance")
