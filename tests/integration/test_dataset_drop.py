"""Files as CRMs export them, ingested for real: generated ids stable, a changed type refused, `dataset drop`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import Settings
from pipelines.ingest import ingest_crm
from pipelines.materialize import materialize
from pipelines.spec import SpecError, load_spec
from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.integration
DATASETS = REPO / "feature_repo" / "datasets"
# a European-Excel export: ';'-separated, cp1252, decimal commas, no id column, one row repeated
EXPORT = ("Nom;Téléphone;Âge;Solde €;Gagné\r\nAmélie;0601;34;1,5;Oui\r\nZoë;0602;41;2500,75;Non\r\n"
          "Amélie;0601;34;1,5;Oui\r\nLéa;0603;7;3;Non\r\nMarc;0604;52;-4,25;Oui\r\n")


def _export(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_bytes(EXPORT.encode("cp1252"))
    return path


def _spec(folder: Path, name: str, entity: str = "{generate: row_hash}", age: str = "int") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"""
name: {name}
description: test export without ids
owner: tests
entity: {entity}
event_timestamp: {{default: 2024-01-01T00:00:00Z}}
label: {{column: Gagné, positive: [Oui], negative: [Non]}}
pii: [{{column: Nom, action: drop}}, {{column: Téléphone, action: hash}}]
consent: {{scoring: {{default: true, source: test}}}}
features:
  - {{column: Âge, name: age, type: {age}{", min: 18" if age == "int" else ""}}}
  - {{column: Solde €, name: balance, type: float}}
""", encoding="utf-8")
    return path


def _stored(settings: Settings, name: str) -> tuple[list[tuple], list[tuple]]:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        rows = conn.execute(f"SELECT lead_id, age, balance, created_at FROM offline.{name} ORDER BY lead_id").fetchall()
        labels = conn.execute("SELECT lead_id, label FROM offline.labels WHERE dataset = %s ORDER BY 1",
                              (name,)).fetchall()
    return rows, labels


def _count(settings: Settings, sql: str, *args: object) -> int:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        return conn.execute(sql, args).fetchone()[0]


@pytest.mark.parametrize("generate", ["row_hash", "row_number"])
def test_generated_ids_are_the_same_on_a_second_ingest(settings: Settings, tmp_path: Path, generate: str) -> None:
    name = f"test_gen_{generate}"
    spec = load_spec(_spec(tmp_path, name, f"{{generate: {generate}}}"))
    first = ingest_crm(settings, _export(tmp_path), spec, progress=False)
    assert (first.rows_read, first.rows_loaded, first.rows_rejected) == (5, 4, 1)  # Léa is 7: below the minimum
    assert "separator ';' (detected)" in first.read_as and "encoding cp1252 (detected" in first.read_as
    rows, labels = _stored(settings, name)
    second = ingest_crm(settings, _export(tmp_path), spec, progress=False)
    assert second.rows_loaded == 4
    assert _stored(settings, name) == (rows, labels), "a second ingest must change nothing and duplicate nothing"
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == 4
    assert sorted(r[2] for r in rows) == [-4.25, 1.5, 1.5, 2500.75]  # decimal commas read as numbers
    if generate == "row_number":
        assert ids == sorted(f"{name}-{n}" for n in (1, 2, 3, 5))
    else:
        twins = sorted(i for i, _, balance, _ in rows if balance == 1.5)  # the repeated row: two distinct leads
        assert twins[1] == twins[0] + "-2" and all(i.startswith("rh-") for i in ids)
    assert _count(settings, "SELECT count(*) FROM offline.ingest_rejects WHERE dataset = %s", name) == 1


def test_a_changed_feature_type_is_refused_then_replaced_with_dataset_drop(settings: Settings, tmp_path: Path,
                                                                           stack_env_vars: dict[str, str]) -> None:
    name = "test_type_change"
    ingest_crm(settings, _export(tmp_path), load_spec(_spec(tmp_path, name)), progress=False)
    changed = load_spec(_spec(tmp_path, name, age="string"))
    with pytest.raises(SpecError) as err:
        ingest_crm(settings, _export(tmp_path), changed, progress=False)
    message = str(err.value)
    assert f"spec '{name}' changes the type of column 'age' from bigint to text (string) of offline.{name}" in message
    assert f"`leadscore dataset drop {name} --yes`, then ingest the file again" in message and "\n" not in message
    cli = [str(Path(sys.executable).parent / "leadscore"), "dataset", "drop", name]
    refused = subprocess.run(cli, env=stack_env_vars, capture_output=True, text=True, timeout=180, cwd=REPO,
                             stdin=subprocess.DEVNULL)
    assert refused.returncode == 1 and "there is no terminal to ask on; pass --yes" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert _count(settings, f"SELECT count(*) FROM offline.{name}") == 4, "refused: nothing may be removed"
    done = subprocess.run([*cli, "--yes"], env=stack_env_vars, capture_output=True, text=True, timeout=180,
                          cwd=REPO, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert f"dropped dataset {name}: table offline.{name} (4 rows), 4 rows in offline.labels" in done.stdout
    again = ingest_crm(settings, _export(tmp_path), changed, progress=False)  # as text: no minimum
    assert again.rows_loaded == 5 and _count(settings, "SELECT count(DISTINCT data_type) FROM "
                                             "information_schema.columns WHERE table_name = %s AND column_name = "
                                             "'age' AND data_type = 'text'", name) == 1


def test_unconfirmed_drop_removes_nothing(settings: Settings, tmp_path: Path, stack_env_vars: dict[str, str],
                                          monkeypatch) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    import pipelines.cli
    from infra.cli import app

    name = "test_unconfirmed"
    ingest_crm(settings, _export(tmp_path), load_spec(_spec(tmp_path, name)), progress=False)
    monkeypatch.setattr(pipelines.cli, "_stdin_is_tty", lambda: True)
    answer = CliRunner().invoke(app, ["dataset", "drop", name], input="n\n", env=stack_env_vars)
    assert answer.exit_code == 1 and f"drop dataset '{name}': table offline.{name} (4 rows)" in answer.output
    assert "nothing dropped" in answer.output
    assert _count(settings, f"SELECT count(*) FROM offline.{name}") == 4
    assert _count(settings, "SELECT count(*) FROM offline.labels WHERE dataset = %s", name) == 4
    listed = CliRunner().invoke(app, ["dataset", "list"], env=stack_env_vars)
    assert listed.exit_code == 0, listed.output
    line = next(ln for ln in listed.output.splitlines() if ln.startswith(name))
    assert line.split()[1:6] == [f"offline.{name}", "4", "4", "1", "1"] and line.endswith("(no spec)")
    assert any(ln.startswith("xeducation ") for ln in listed.output.splitlines())


def test_a_wrongly_separated_file_is_one_line_naming_the_cause(stack_env_vars: dict[str, str],
                                                               tmp_path: Path) -> None:
    spec = _spec(tmp_path, "test_wrong_sep")
    spec.write_text(spec.read_text(encoding="utf-8") + "csv: {separator: ','}\n", encoding="utf-8")
    cli = [str(Path(sys.executable).parent / "leadscore"), "ingest", "crm", str(_export(tmp_path)), "--spec", str(spec)]
    done = subprocess.run(cli, env=stack_env_vars, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: spec 'test_wrong_sep' names column(s) ['Gagné', 'Nom', 'Solde €', 'Téléphone', 'Âge'] that export.csv "
        "lacks; its header parsed as 1 column 'Nom;Téléphone;Âge;Solde €;Gagné' with separator ','; the spec sets "
        "separator ',' but the file looks ';'-separated: set `csv: {separator: \";\"}` in the spec"]


def test_hand_written_tables_are_never_dropped(settings: Settings) -> None:
    from pipelines.dataset import DatasetError, drop_dataset, migration_tables

    assert {"lead_demographics", "lead_engagement", "market_context", "labels", "ingest_runs"} <= migration_tables()
    with pytest.raises(DatasetError, match="hand-written feature view 'lead_demographics'"):
        drop_dataset(settings, "broker_leads")
    with pytest.raises(DatasetError, match="offline.lead_engagement was not made by ingest"):
        drop_dataset(settings, "lead_engagement")
    with pytest.raises(DatasetError, match="no dataset 'no_such_thing'"):
        drop_dataset(settings, "no_such_thing")
    assert _count(settings, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'offline' AND "
                  "table_name IN ('lead_demographics', 'lead_engagement')") == 2


def test_olist_ingest_takes_its_labels_from_the_closed_deals_file(settings: Settings, applied_store) -> None:  # noqa: ANN001
    from pipelines.training_data import build_training_set

    result = ingest_crm(settings, SHARED_DATA / "olist_marketing_qualified_leads.csv",
                        load_spec(DATASETS / "olist.yaml"), progress=False)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (8000, 8000, 0)
    assert _count(settings, "SELECT count(*) FROM offline.labels WHERE dataset = 'olist' AND label = 1") == 842
    frame = build_training_set(settings, "olist_v1", store=applied_store)
    assert (len(frame), int(frame["label"].sum())) == (8000, 842)
    assert frame["origin"].notna().sum() == 8000 - 60  # 60 leads have no origin


def test_drop_removes_the_dataset_from_every_store_and_only_it(settings: Settings, tmp_path: Path) -> None:
    import psycopg

    from pipelines.dataset import drop_dataset
    from pipelines.feature_store import FEATURE_REPO, apply, feature_store
    from pipelines.redis_codec import EntityKeyCodec, field_key

    repo = tmp_path / "feature_repo"  # the real repo plus two datasets over the same leads, applied to the registry
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    entity = "{column: Téléphone}"  # the phone as the id, so both datasets write to the same lead keys
    drop, keep = "test_drop_a", "test_drop_b"
    for name in (drop, keep):
        spec = _spec(repo / "datasets", name, entity)
        spec.write_text(spec.read_text(encoding="utf-8").replace(", {column: Téléphone, action: hash}", ""),
                        encoding="utf-8")
    apply(settings, repo)
    store = feature_store(settings, repo)
    for name in (drop, keep):
        ingest_crm(settings, _export(tmp_path), load_spec(repo / "datasets" / f"{name}.yaml"), progress=False)
    assert all(r.rows_written == 3 for r in materialize(settings, [drop, keep], repo_path=repo))  # 0601 twice: 1
    client = store._get_provider().online_store._get_client(store.config.online_store)
    keys = [EntityKeyCodec("lead_id", store.project).key(lead) for lead in ("0601", "0602", "0604")]
    fields = {view: {field_key(view, "age"), field_key(view, "balance"), f"_ts:{view}".encode()}
              for view in (drop, keep)}
    assert all(fields[drop] | fields[keep] <= set(client.hgetall(k)) for k in keys)
    before = {t: _count(settings, f"SELECT count(*) FROM offline.{t} WHERE {c} = %s", drop)
              for t, c in (("labels", "dataset"), ("ingest_rejects", "dataset"), ("ingest_runs", "dataset"),
                           ("materialization_runs", "feature_view"))}
    assert all(before.values()), before

    result = drop_dataset(settings, drop, folder=repo / "datasets", repo_path=repo)

    assert (result.online_keys, result.online_fields) == (3, 9)
    for key in keys:
        online = set(client.hgetall(key))
        assert not online & fields[drop] and fields[keep] <= online
    for table, col in (("labels", "dataset"), ("ingest_rejects", "dataset"), ("ingest_runs", "dataset"),
                       ("materialization_runs", "feature_view")):
        assert _count(settings, f"SELECT count(*) FROM offline.{table} WHERE {col} = %s", drop) == 0, table
        assert _count(settings, f"SELECT count(*) FROM offline.{table} WHERE {col} = %s", keep) > 0, table
    with psycopg.connect(settings.pg_dsn()) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (f"offline.{drop}",)).fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM offline.test_drop_b").fetchone()[0] == 3  # 0601 twice: once
        audit = conn.execute("SELECT detail FROM compliance.audit_log WHERE id = %s", (result.audit_id,)).fetchone()[0]
    audit = audit if isinstance(audit, dict) else json.loads(audit)
    assert audit["dataset"] == drop and audit["rows"] == 3 and audit["labels"] == before["labels"]
    fresh = feature_store(settings, repo)
    assert drop not in {fv.name for fv in fresh.list_feature_views()}
    assert keep in {fv.name for fv in fresh.list_feature_views()}
    assert f"{drop}_v1" not in {fs.name for fs in fresh.list_feature_services()}
    assert set(result.registry) == {f"feature service {drop}_v1", f"feature view {drop}", f"data source {drop}_source"}
