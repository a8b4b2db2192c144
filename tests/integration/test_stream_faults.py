"""The fault matrix of the stream workers (issue #17): a store or the broker restarted under a backlog, and a worker
stopped while a store is down. Each case against the real servers: nothing lost, nothing counted twice, a clear
line in the worker's log while the fault lasts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.config import Settings
from pipelines.demo_stream import stop_worker
from pipelines.streams.sinks import wait_for
from tests.integration.stream_support import diff_rows, events_for, expected_rows, offline_latest, produce, rows_match
from tests.integration.test_streams import _log, _start_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LEADS = [f"F-{i:03d}" for i in range(40)]


@pytest.fixture(scope="module")
def faults_env(settings: Settings, stack_env_vars: dict[str, str], applied_store) -> dict[str, str]:  # noqa: ANN001
    """A consumer group of this module's own, and scoring consent for its leads."""
    import psycopg

    from pipelines.streams.topics import ensure_topics

    with psycopg.connect(settings.pg_dsn()) as conn:
        for lead in LEADS:
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead,))
    ensure_topics(settings)
    return {**stack_env_vars, "LEADSCORE_STREAM_GROUP": f"leadscore-streams-faults-{os.getpid()}"}


@pytest.fixture()
def worker(faults_env: dict[str, str]) -> Iterator[subprocess.Popen]:
    proc = _start_worker(faults_env)
    yield proc
    stop_worker(proc)


def _worker_log(env: dict[str, str], since: int) -> str:
    return (Path(env["LEADSCORE_STATE_DIR"]) / "stream-worker.log").read_text(errors="replace")[since:]


def _log_size(env: dict[str, str]) -> int:
    path = Path(env["LEADSCORE_STATE_DIR"]) / "stream-worker.log"
    return len(path.read_text(errors="replace")) if path.exists() else 0


def _online(settings: Settings, leads: list[str]) -> dict[str, dict]:
    from pipelines.feature_store import feature_store
    from pipelines.online import OnlineReader

    return {r["lead_id"]: r for r in OnlineReader(feature_store(settings), "lead_scoring_v1").read(leads)}


def _send(settings: Settings, items: list) -> None:
    """Produce `items` 400 at a time, retrying while the broker is away (a re-sent event counts once)."""
    from aiokafka.errors import KafkaError

    for i in range(0, len(items), 400):
        for _ in range(60):
            try:
                asyncio.run(produce(settings.kafka_bootstrap, items[i:i + 400]))
                break
            except KafkaError:
                time.sleep(0.5)
        else:
            raise AssertionError("the broker did not come back within 30 s")
        time.sleep(0.1)


def _backlog_through(settings: Settings, env: dict[str, str], leads: list[str],
                     fault: Callable[[Callable[[], None]], None], per_lead: int = 300) -> dict[str, dict]:
    """Send a stream live and cause `fault` once a quarter of it has landed; `fault` is handed the sending of the
    stream's last tenth, to call while the fault lasts (or after it). Wait until the offline store holds exactly the
    expected aggregates; return them."""
    items = events_for(leads, per_lead, datetime.now(UTC) - timedelta(hours=4))
    head, tail = items[: len(items) * 9 // 10], items[len(items) * 9 // 10:]
    counted = lambda: sum(r["listing_views_30d"] for r in offline_latest(settings, leads).values())  # noqa: E731
    expected = expected_rows(items)
    producing = threading.Thread(target=_send, args=(settings, head))
    producing.start()
    try:
        assert wait_for(lambda: counted() >= sum(r["listing_views_30d"] for r in expected_rows(head).values()) // 4,
                        60), _log(env)
    finally:
        producing.join()
    fault(lambda: _send(settings, tail))
    _send(settings, items[::9])  # re-sent old events: still counted once
    wait_for(lambda: rows_match(expected, offline_latest(settings, leads)), 120)
    assert diff_rows(expected, offline_latest(settings, leads)) == [], _log(env)
    return expected


def _store_restart(settings: Settings, env: dict[str, str], server: object) -> Callable:
    """A fault: stop `server`, send events, wait until the worker has said that it cannot write, start it again."""
    from infra import stack

    def fault(send: Callable[[], None]) -> None:
        since = _log_size(env)
        server.stop()  # type: ignore[attr-defined]
        try:
            send()
            assert wait_for(lambda: "writing the batch failed (store:" in _worker_log(env, since), 30), _log(env)
        finally:
            stack.up(settings, say=lambda _: None)

    return fault


def test_postgres_restarted_under_a_backlog_loses_and_double_counts_nothing(settings: Settings, worker,  # noqa: ANN001
                                                                           faults_env: dict[str, str]) -> None:
    from infra.postgres import Postgres

    _backlog_through(settings, faults_env, LEADS[:10], _store_restart(settings, faults_env, Postgres(settings)))
    assert worker.poll() is None, "the worker stopped on a PostgreSQL restart"


def test_redis_restarted_under_a_backlog_loses_and_double_counts_nothing(settings: Settings, worker,  # noqa: ANN001
                                                                        faults_env: dict[str, str]) -> None:
    from infra.servers import Redis

    leads = LEADS[10:20]
    expected = _backlog_through(settings, faults_env, leads, _store_restart(settings, faults_env, Redis(settings)))
    assert wait_for(lambda: all(_online(settings, leads)[lead]["listing_views_30d"] ==
                                expected[lead]["listing_views_30d"] for lead in leads), 60), _online(settings, leads)
    online = _online(settings, leads)
    for lead in leads:
        for col in ("listing_views_30d", "sessions_1d", "time_on_site_s_7d", "emails_opened_30d"):
            assert online[lead][col] == expected[lead][col], (lead, col, online[lead][col], expected[lead][col])
    assert worker.poll() is None, "the worker stopped on a Redis restart"


def test_the_broker_restarted_cleanly_under_a_backlog_counts_every_event_once(settings: Settings, worker,  # noqa: ANN001
                                                                             faults_env: dict[str, str]) -> None:
    from infra.process import wait_until
    from infra.servers import Broker

    def restart_broker(send: Callable[[], None]) -> None:
        broker = Broker(settings)
        broker.stop()
        time.sleep(2)
        broker.start()
        wait_until(broker.healthy, 30, "the broker after a restart")
        send()

    _backlog_through(settings, faults_env, LEADS[20:30], restart_broker)
    assert worker.poll() is None, "the worker stopped on a broker restart"


def test_sigterm_while_postgres_is_down_stops_the_worker_and_loses_nothing(settings: Settings,  # noqa: ANN001
                                                                          faults_env: dict[str, str]) -> None:
    """A worker retrying a batch against a stopped PostgreSQL still stops on SIGTERM within its grace period;
    what it had not landed is processed by the next worker once PostgreSQL is back."""
    from infra import stack
    from infra.postgres import Postgres

    leads = LEADS[30:40]
    first = events_for(leads, 20, datetime.now(UTC) - timedelta(hours=2))
    second = events_for(leads, 20, datetime.now(UTC) - timedelta(hours=1))
    proc = _start_worker(faults_env)
    try:
        asyncio.run(produce(settings.kafka_bootstrap, first))
        assert wait_for(lambda: rows_match(expected_rows(first), offline_latest(settings, leads)), 60), _log(faults_env)
        since = _log_size(faults_env)
        Postgres(settings).stop()
        try:
            asyncio.run(produce(settings.kafka_bootstrap, second))
            assert wait_for(lambda: "writing the batch failed (store:" in _worker_log(faults_env, since), 30), \
                _log(faults_env)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=45)
            took = time.monotonic() - started
            stopped_log = _log(faults_env)
        finally:
            stack.up(settings, say=lambda _: None)
    finally:
        stop_worker(proc)
    assert took < 30, f"the worker took {took:.1f} s to stop on SIGTERM while PostgreSQL was down: {stopped_log}"
    expected = expected_rows(first + second)
    restarted = _start_worker(faults_env)
    try:
        wait_for(lambda: rows_match(expected, offline_latest(settings, leads)), 90)
        assert diff_rows(expected, offline_latest(settings, leads)) == [], _log(faults_env)
    finally:
        stop_worker(restarted)
