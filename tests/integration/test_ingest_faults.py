"""The fault matrix's ingest cases (issue #17): PostgreSQL restarted during an ingest, and the disk under a dataset's
table filling up. Each against the real server: nothing lost, nothing counted twice, a readable line, the run's end
recorded, and no partial dataset served."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.config import Settings
from tests.conftest import REPO
from tests.integration.test_dataset_drop import _spec
from tests.integration.test_ingest_runs import _file, _loaded, _runs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ingest(env: dict[str, str], path: Path, spec: Path) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "leadscore"), "ingest", "crm", str(path), "--spec",
                             str(spec), "--chunk-rows", "2000"], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_loading(settings: Settings, name: str, above: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _loaded(settings, name) <= above and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, f"the ingest ended before the fault: {proc.communicate()}"


def test_postgres_restarted_during_an_ingest_loads_every_row_once(settings: Settings, tmp_path: Path,
                                                                   stack_env_vars: dict[str, str]) -> None:
    from infra import stack
    from infra.postgres import Postgres

    name = "test_ingest_restart"
    spec = _spec(tmp_path / "specs", name)
    rows = 200_000
    proc = _ingest(stack_env_vars, _file(tmp_path / "big.csv", rows), spec)
    try:
        _wait_loading(settings, name, 2000, proc)
        Postgres(settings).stop()
        time.sleep(2)
        stack.up(settings, say=lambda _: None)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert "PostgreSQL went away after" in err and "reading big.csv again from the start" in err, err[-2000:]
    assert f"read {rows}, loaded {rows}, rejected 0" in out, out
    assert _loaded(settings, name) == rows  # every row once: the second run's upserts rewrote the first run's
    runs = _runs(settings, name)
    assert [r[:2] for r in runs] == [("failed", True), ("done", True)], runs
    assert runs[0][2].startswith(("OperationalError", "AdminShutdown")), runs
    assert runs[-1][3] == rows


@pytest.fixture()
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs: a real full disk for one table (mounting needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    where = Path(tempfile.mkdtemp(prefix="leadscore-full-", dir="/var/tmp"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def test_a_full_disk_during_an_ingest_fails_in_one_line_and_the_partial_dataset_is_not_served(
        settings: Settings, tmp_path: Path, stack_env_vars: dict[str, str], small_disk: Path) -> None:
    from pipelines.dataset import drop_dataset
    from pipelines.feature_store import FEATURE_REPO, apply, feature_store
    from pipelines.ingest_runs import PartialDataset
    from pipelines.materialize import materialize
    from pipelines.spec import load_spec
    from pipelines.training_data import build_training_set
    from tests.conftest import leadscore

    name = "test_ingest_full"
    repo = tmp_path / "feature_repo"  # the real repo plus this dataset, applied to the registry
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    spec = _spec(repo / "datasets", name)
    apply(settings, repo)
    store = feature_store(settings, repo)
    service = load_spec(spec).feature_service
    first = leadscore(["ingest", "crm", str(_file(tmp_path / "good.csv", 300)), "--spec", str(spec)], stack_env_vars)
    assert first.returncode == 0, first.stdout + first.stderr
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        data = os.stat(conn.execute("SHOW data_directory").fetchone()[0])  # PostgreSQL's own account
        space = small_disk / "space"
        space.mkdir()
        for path in (small_disk, space):
            os.chown(path, data.st_uid, data.st_gid)
        conn.execute(f"CREATE TABLESPACE leadscore_small LOCATION '{space}'")
        conn.execute(f"ALTER TABLE offline.{name} SET TABLESPACE leadscore_small")
    try:
        big = _ingest(stack_env_vars, _file(tmp_path / "big.csv", 400_000), spec)
        out, err = big.communicate(timeout=600)
        lines = [line for line in err.splitlines() if line.strip() and "ingest test_ingest_full" not in line]
        assert big.returncode == 1 and "Traceback" not in err, out[-2000:] + err[-2000:]
        assert lines[-1].startswith("error: PostgreSQL ran out of disk space after"), lines[-3:]
        assert "free space where PostgreSQL keeps its data" in lines[-1]
        status, finished, reason, _ = _runs(settings, name)[-1]
        assert (status, finished) == ("failed", True) and reason.startswith("DiskFull"), reason
        partly = _loaded(settings, name)
        assert 300 <= partly < 400_000
        with pytest.raises(PartialDataset, match=f"dataset '{name}' is partial: its last ingest of big.csv"):
            build_training_set(settings, service, store=store)
        with pytest.raises(PartialDataset, match=f"feature view {name} was not materialized"):
            materialize(settings, [name], repo_path=repo)
        skipped = {r.feature_view: r.note for r in materialize(settings, repo_path=repo)}
        assert skipped[name].startswith("skipped: its last ingest of big.csv"), skipped
    finally:
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
            conn.execute(f"ALTER TABLE offline.{name} SET TABLESPACE pg_default")
            conn.execute("DROP TABLESPACE leadscore_small")
    again = leadscore(["ingest", "crm", str(tmp_path / "big.csv"), "--spec", str(spec)], stack_env_vars)
    assert again.returncode == 0, again.stdout + again.stderr
    # each row once (the first 300 rows of big.csv are good.csv's, with the same generated ids)
    assert _loaded(settings, name) == 400_000
    assert len(build_training_set(settings, service, store=store)) == 400_000
    drop_dataset(settings, name, folder=repo / "datasets", repo_path=repo)

