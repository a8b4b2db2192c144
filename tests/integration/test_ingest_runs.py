"""Every ingest run's end is recorded, whether it succeeds or fails: `offline.ingest_runs` has its finish time,
status and, for a failure, the reason in one line."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from infra.config import Settings
from tests.conftest import leadscore
from tests.integration.test_dataset_drop import _spec

pytestmark = pytest.mark.integration


def _file(path: Path, rows: int) -> Path:
    lines = ["Nom;Téléphone;Âge;Solde €;Gagné"]
    lines += [f"Lead {i};06{i:06d};{20 + i % 50};{i},5;{'Oui' if i % 3 else 'Non'}" for i in range(rows)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def _runs(settings: Settings, name: str) -> list[tuple]:
    with psycopg.connect(settings.pg_dsn()) as conn:
        return conn.execute("SELECT status, finished_at IS NOT NULL, reason, rows_loaded FROM offline.ingest_runs "
                            "WHERE dataset = %s ORDER BY id", (name,)).fetchall()


def test_a_run_stopped_midway_is_recorded_failed_with_its_reason(settings: Settings, tmp_path: Path,
                                                                 stack_env_vars: dict[str, str]) -> None:
    """An operator's Ctrl-C during a long ingest: the chunks written stay (each its own transaction), the run is
    marked failed with the reason, and the command says so in one line."""
    import signal
    import subprocess
    import time

    from tests.conftest import REPO

    name = "test_ingest_runs"
    spec = _spec(tmp_path / "specs", name)
    good = leadscore(["ingest", "crm", str(_file(tmp_path / "good.csv", 300)), "--spec", str(spec)], stack_env_vars)
    assert good.returncode == 0, good.stdout + good.stderr
    big = _file(tmp_path / "big.csv", 400_000)
    proc = subprocess.Popen([*_leadscore_argv(), "ingest", "crm", str(big), "--spec", str(spec), "--chunk-rows",
                             "2000"], env=stack_env_vars, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _loaded(settings, name) <= 300 and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the ingest ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "Traceback" not in out + err, out + err
    runs = _runs(settings, name)
    assert runs[0][:3] == ("done", True, None)
    status, finished, reason, _ = runs[-1]
    assert (status, finished) == ("failed", True) and reason.startswith("KeyboardInterrupt"), runs
    assert 300 < _loaded(settings, name) < 400_000 + 300  # the chunks before the stop stay, as each was committed
    from pipelines.ingest_runs import unfinished

    with psycopg.connect(settings.pg_dsn()) as conn:  # and the dataset is partial: not materialized nor trained on
        assert "its last ingest of big.csv" in (unfinished(conn, name) or ""), unfinished(conn, name)


def _loaded(settings: Settings, name: str) -> int:
    with psycopg.connect(settings.pg_dsn()) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"offline.{name}",)).fetchone()[0]
        return conn.execute(f"SELECT count(*) FROM offline.{name}").fetchone()[0] if exists else 0


def _leadscore_argv() -> list[str]:
    import sys

    script = Path(sys.executable).parent / "leadscore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "infra"]


def test_a_few_unreadable_bytes_reject_their_rows_only(settings: Settings, tmp_path: Path,
                                                       stack_env_vars: dict[str, str]) -> None:
    """A UTF-8 export with two corrupted rows: those two are rejected into offline.ingest_rejects with the column and
    the option that fixes a wrong encoding; every other row is loaded with its accents intact."""
    name = "test_ingest_bad_bytes"
    spec = _spec(tmp_path / "specs", name)
    path = _file(tmp_path / "export.csv", 500)
    data = path.read_bytes().split(b"\r\n")
    data[10] = data[10].replace(b"Lead", b"Le\xffd")
    data[20] = data[20].replace(b"Lead", b"Le\xfed")
    path.write_bytes(b"\r\n".join(data))
    done = leadscore(["ingest", "crm", str(path), "--spec", str(spec)], stack_env_vars)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read 500, loaded 498, rejected 2" in done.stdout, done.stdout
    assert "2 line(s) with bytes that are not utf-8" in done.stdout
    with psycopg.connect(settings.pg_dsn()) as conn:
        rejects = conn.execute("SELECT row_number, reason FROM offline.ingest_rejects WHERE dataset = %s ORDER BY 1",
                               (name,)).fetchall()
    assert [r[0] for r in rejects] == [10, 20], rejects
    assert all(r[1].startswith("bytes that are not utf-8 in column 'Nom'") and "csv: {encoding" in r[1]
               for r in rejects), rejects
    assert _runs(settings, name)[-1][:2] == ("done", True)


def test_a_first_load_copies_straight_in_and_falls_back_to_upserts_at_a_key_already_there(
        settings: Settings, tmp_path: Path) -> None:
    """A dataset's first ingest COPYs into its table with no staging table or upsert; when another writer has put
    one of its keys there meanwhile (two ingests of one dataset at once), that chunk is upserted instead: no error,
    no row lost, the newer values kept."""
    from pipelines.ingest import ensure_table, ingest_crm
    from pipelines.ingest_write import Direct, SeenKeys, write_chunk
    from pipelines.spec import load_spec
    from pipelines.validate import check_chunk

    name = "test_ingest_direct"
    spec = load_spec(_spec(tmp_path / "specs", name, entity="{column: Nom}"))
    first = ingest_crm(settings, _file(tmp_path / "a.csv", 40), spec, progress=False)
    assert first.rows_loaded == 40
    with psycopg.connect(settings.pg_dsn()) as conn:
        assert not Direct.at_start(conn, spec).features  # the next run of this dataset upserts
        conn.execute(f"DELETE FROM offline.{name} WHERE lead_id <> 'Lead 1'")
        conn.execute("DELETE FROM offline.labels WHERE dataset = %s AND lead_id <> 'Lead 1'", (name,))
        ensure_table(conn, spec)
        direct = Direct(features=True, labels=True)  # as if the run had begun before the other writer's row landed
        from pipelines.csv_read import read_chunks, resolve_dialect

        dialect = resolve_dialect(_file(tmp_path / "b.csv", 5))  # ';' and the decimal comma
        raw = next(read_chunks(tmp_path / "b.csv", 100, dialect))[0]
        raw["Âge"] = "77"
        checked = check_chunk(raw, spec, 1, b"k" * 32, dialect=dialect)
        with conn.transaction():
            assert write_chunk(conn, spec, checked, "sha", SeenKeys(), direct=direct) == 5
        assert not direct.features and not direct.labels  # fell back, for the rest of the run too
        ages = conn.execute(f"SELECT lead_id, age FROM offline.{name} ORDER BY 1").fetchall()
        assert ages == [(f"Lead {i}", 77) for i in range(5)]
        assert conn.execute("SELECT count(*) FROM offline.labels WHERE dataset = %s", (name,)).fetchone()[0] == 5


def test_a_broker_column_assigns_each_lead_and_dropping_the_dataset_forgets_it(
        settings: Settings, tmp_path: Path, stack_env_vars: dict[str, str]) -> None:
    """A spec's `broker_column`: each lead's broker lands in offline.lead_brokers (the last row of a lead wins; an
    empty cell assigns nobody; a value that is no broker id rejects its row with the column named); a second file
    reassigns; `dataset drop` removes the dataset's assignments."""
    from pipelines.dataset import drop_dataset

    name = "test_ingest_brokers"
    spec = _spec(tmp_path / "specs", name, entity="{column: Nom}")
    spec.write_text(spec.read_text(encoding="utf-8") + "broker_column: Agent\n", encoding="utf-8")
    path = _file(tmp_path / "export.csv", 6)
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    agents = ["Agent", "BR-1", "BR-2", "", "bad agent", "BR-1", "BR-2"]
    path.write_bytes("\r\n".join(f"{line};{agent}" if line else line for line, agent in zip(lines, agents + [""],
                                                                                          strict=False)).encode())
    done = leadscore(["ingest", "crm", str(path), "--spec", str(spec)], stack_env_vars)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read 6, loaded 5, rejected 1" in done.stdout, done.stdout

    def held() -> list[tuple]:
        with psycopg.connect(settings.pg_dsn()) as conn:
            return conn.execute("SELECT lead_id, broker FROM offline.lead_brokers WHERE dataset = %s ORDER BY 1",
                                (name,)).fetchall()

    assert held() == [("Lead 0", "BR-1"), ("Lead 1", "BR-2"), ("Lead 4", "BR-1"), ("Lead 5", "BR-2")]
    with psycopg.connect(settings.pg_dsn()) as conn:
        reason = conn.execute("SELECT reason FROM offline.ingest_rejects WHERE dataset = %s", (name,)).fetchone()[0]
    assert reason == "broker 'bad agent' is not a broker id: 1-64 of A-Z, a-z, 0-9, _ . : @ - (column 'Agent')"
    path.write_bytes(path.read_bytes().replace(b";BR-1", b";BR-9"))
    assert leadscore(["ingest", "crm", str(path), "--spec", str(spec)], stack_env_vars).returncode == 0
    assert held() == [("Lead 0", "BR-9"), ("Lead 1", "BR-2"), ("Lead 4", "BR-9"), ("Lead 5", "BR-2")]
    drop_dataset(settings, name, folder=spec.parent)
    assert held() == []
