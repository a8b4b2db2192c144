"""The fault matrix's batch cases (issue #17): PostgreSQL restarted while a training set is built, Redis restarted
while a materialization writes. Each outlives the restart and ends with exactly what it ends with undisturbed."""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from infra.config import Settings
from tests.conftest import REPO, SHARED_DATA
from tests.integration.test_dataset_drop import _spec
from tests.integration.test_ingest_runs import _file

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:  # noqa: ANN001
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)  # a hung job never holds the session open
    thread.start()
    return thread, out


def _join(thread: threading.Thread, seconds: float, settings: Settings | None = None) -> None:
    """Wait for the job; a job still running after `seconds` fails the test with where it stands (its stack), and
    its PostgreSQL sessions are ended, so a stalled job cannot hold the server up for the tests after it."""
    thread.join(seconds)
    if thread.is_alive():
        frame = sys._current_frames().get(thread.ident)
        where = "".join(traceback.format_stack(frame)[-12:]) if frame else "(no frame)"
        if settings is not None:
            from pipelines.materialize import APPLICATION as MATERIALIZE
            from pipelines.training_data import APPLICATION as TRAINING

            with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name IN "
                             "(%s, %s)", (MATERIALIZE, TRAINING))
        pytest.fail(f"the job was still running {seconds:.0f} s after the restart; it stood at:\n{where}")


def test_postgres_restarted_while_a_training_set_is_built_gives_the_same_set(settings: Settings,
                                                                           applied_store) -> None:  # noqa: ANN001
    from infra import stack
    from infra.postgres import Postgres
    from pipelines.ingest import ingest_crm
    from pipelines.spec import load_spec
    from pipelines.training_data import APPLICATION, build_training_set

    spec = load_spec(REPO / "feature_repo/datasets/xeducation.yaml")
    ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)
    reference = build_training_set(settings, "xeducation_v1", store=applied_store)
    thread, out = _in_thread(build_training_set, settings, "xeducation_v1", store=applied_store)
    caught = False
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:
            busy = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = "
                                "'active'", (APPLICATION,)).fetchone()[0]
            if busy:
                caught = True
                break
            time.sleep(0.01)
    assert caught, "the build ended before PostgreSQL could be stopped under it"
    Postgres(settings).stop()
    time.sleep(2)
    stack.up(settings, say=lambda _: None)
    _join(thread, 300, settings)
    assert "error" not in out, repr(out.get("error"))
    frame = out["value"]
    assert frame.equals(reference), "the set built across the restart differs from the one built undisturbed"


def _materialize_under(settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str,
                       stop: Callable[[Settings], None], started: Callable[[Settings, object, int], bool],
                       said: str) -> None:
    """Ingest 120,000 rows into a dataset of its own, start its materialization, `stop` a server once `started`
    says the job is under way, bring the stack up again, and check that the job `said` so while the fault lasted
    and that every row is online afterwards."""
    from infra import stack
    from pipelines.dataset import drop_dataset
    from pipelines.feature_store import FEATURE_REPO, apply, feature_store
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.redis_codec import EntityKeyCodec
    from pipelines.spec import load_spec

    repo = tmp_path / "feature_repo"
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    spec = _spec(repo / "datasets", name)
    apply(settings, repo)
    store = feature_store(settings, repo)
    rows = 120_000
    ingest_crm(settings, _file(tmp_path / "leads.csv", rows), load_spec(spec), progress=False)
    client = store._get_provider().online_store._get_client(store.config.online_store)
    before = client.dbsize()
    caplog.set_level(logging.WARNING, logger="leadscore.materialize")
    thread, out = _in_thread(materialize, settings, [name], repo_path=repo)
    deadline = time.monotonic() + 60
    seen = False  # a job that ended at once never reaches the check below
    while thread.is_alive() and not (seen := started(settings, client, before)):
        if time.monotonic() > deadline:
            _join(thread, 0, settings)  # fails with where the job stands
        time.sleep(0.01)
    assert seen and thread.is_alive(), f"the materialization ended before the server could be stopped under it: {out}"
    stop(settings)
    time.sleep(2)
    stack.up(settings, say=lambda _: None)
    _join(thread, 300, settings)
    assert "error" not in out, repr(out.get("error"))
    assert out["value"][0].rows_written == rows, out["value"]
    assert said in caplog.text, f"the fault was not met (nothing said '{said}'): {caplog.text[-500:]}"
    with psycopg.connect(settings.pg_dsn()) as conn:
        leads = [r[0] for r in conn.execute(f"SELECT lead_id FROM offline.{name}")]
        recorded = conn.execute("SELECT count(*) FROM offline.materialization_runs WHERE feature_view = %s AND ok",
                                (name,)).fetchone()[0]
    assert recorded == 1, "the window was recorded more or less than once"
    codec = EntityKeyCodec("lead_id", store.project)
    client = store._get_provider().online_store._get_client(store.config.online_store)
    pipe = client.pipeline(transaction=False)
    for lead in leads:
        pipe.hexists(codec.key(lead), f"_ts:{name}".encode())
    assert all(pipe.execute()), "a row is missing online after the restart"
    drop_dataset(settings, name, folder=repo / "datasets", repo_path=repo)


def test_redis_restarted_while_a_materialization_writes_puts_every_row_online(
        settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from infra.servers import Redis

    def stop(s: Settings) -> None:
        """Hold the job's next write (CLIENT PAUSE WRITE), then stop Redis: the held write meets the restart for
        certain, where a plain stop raced the job's last writes (120,000 rows took less time than a stop)."""
        import redis

        redis.Redis.from_url(s.redis_url("admin")).client_pause(30_000, all=False)  # the operator login
        Redis(s).stop()

    _materialize_under(settings, tmp_path, caplog, "test_materialize_restart", stop,
                       lambda _s, client, before: client.dbsize() >= before + 1000,
                       "Redis did not answer while materializing")


def test_postgres_restarted_while_a_materialization_runs_puts_every_row_online(
        settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL stopped while the materialization's query streams rows (found in pg_stat_activity): it runs
    again once PostgreSQL answers, records its window once, and every row is online."""
    from infra.postgres import Postgres
    from pipelines.materialize import APPLICATION

    def started(settings: Settings, _client: object, _before: int) -> bool:
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
            return bool(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND "
                                     "state = 'active'", (APPLICATION,)).fetchone()[0])

    _materialize_under(settings, tmp_path, caplog, "test_materialize_pg_restart", lambda s: Postgres(s).stop(),
                       started, "PostgreSQL went away during the materialization")
