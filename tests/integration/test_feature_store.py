"""The feature store end to end on real PostgreSQL and Redis: apply, ingest, rejects, materialize, online reads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from infra.config import Settings
from pipelines.ingest import ingest_crm
from pipelines.materialize import materialize
from pipelines.online import online_features
from pipelines.spec import load_spec
from tests.conftest import SHARED_DATA, leadscore

pytestmark = pytest.mark.integration
DATASETS = Path(__file__).resolve().parents[2] / "feature_repo" / "datasets"


def test_apply_registers_every_object_with_description_owner_and_tags(applied_store) -> None:  # noqa: ANN001
    store = applied_store
    service = store.get_feature_service("lead_scoring_v1")
    assert {p.name for p in service.feature_view_projections} == {
        "lead_demographics", "lead_engagement", "lead_engagement_ratios"}
    assert {fs.name for fs in store.list_feature_services()} >= {"lead_scoring_v1", "xeducation_v1",
                                                                 "health_insurance_v1"}
    objects = [*store.list_entities(), *store.list_feature_views(), *store.list_on_demand_feature_views(),
               *store.list_feature_services(), *store.list_data_sources()]
    for obj in objects:
        assert obj.description and obj.owner and obj.tags, f"{type(obj).__name__} {obj.name} lacks metadata"
    for fv in store.list_feature_views():
        assert fv.ttl and fv.ttl.total_seconds() > 0, fv.name
    assert {s.name for s in store.list_data_sources()} >= {"lead_engagement_push"}


@pytest.fixture(scope="module")
def xeducation(settings: Settings, applied_store):  # noqa: ANN001, ANN201
    spec = load_spec(DATASETS / "xeducation.yaml")
    result = ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)
    return spec, result


def test_xeducation_ingest_loads_every_row_without_leaks_or_pii(settings: Settings, xeducation) -> None:  # noqa: ANN001
    import psycopg

    spec, result = xeducation
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (9240, 9240, 0)
    with psycopg.connect(settings.pg_dsn()) as conn:
        cols = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns "
                                           "WHERE table_schema = 'offline' AND table_name = 'xeducation'")}
        labels = conn.execute("SELECT label, count(*) FROM offline.labels WHERE dataset = 'xeducation' "
                              "GROUP BY 1 ORDER BY 1").fetchall()
        no_mail = conn.execute("SELECT count(*) FROM compliance.consent WHERE purpose = 'marketing_contact' "
                               "AND NOT granted AND lead_id IN (SELECT lead_id FROM offline.xeducation)").fetchone()[0]
    assert not any(word in c for c in cols for word in ("tag", "quality", "asymmetrique", "activity", "profile",
                                                        "lead_number"))
    assert labels == [(0, 5679), (1, 3561)]
    assert no_mail == 734  # leads with 'Do Not Email' = Yes


def test_reingesting_the_same_file_changes_nothing(settings: Settings, xeducation) -> None:  # noqa: ANN001
    import psycopg

    spec, _ = xeducation
    query = f"SELECT count(*), max(created_at), sum(hashtext(t::text)) FROM {spec.table} t"
    with psycopg.connect(settings.pg_dsn()) as conn:
        before = conn.execute(query).fetchone()
    again = ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)
    with psycopg.connect(settings.pg_dsn()) as conn:
        after = conn.execute(query).fetchone()
    assert again.rows_loaded == 9240 and before == after


def _bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "crm.csv"
    rows = [["lead", "when", "won", "age", "phone"],
            ["A1", "2024-01-05", "1", "34", "9810000001"],
            ["A2", "2024-01-05", "0", "41", "9810000002"],
            ["", "2024-01-05", "0", "41", "9810000003"],
            ["A4", "yesterday", "0", "41", "9810000004"],
            ["A5", "2024-01-05", "perhaps", "41", "9810000005"],
            ["A6", "2024-01-05", "1", "7", "9810000006"],
            ["A1", "2024-01-05", "1", "34", "9810000001"]]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _spec(tmp_path: Path, name: str, consent: str = "default: true") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
name: {name}
description: test CRM
owner: tests
entity: {{column: lead}}
event_timestamp: {{column: when}}
label: {{column: won}}
pii: [{{column: phone, action: hash, as_feature: phone_hash}}]
consent: {{scoring: {{{consent}, source: test}}}}
features: [{{column: age, name: age, type: int, min: 18, max: 100}}]
""")
    return path


def test_bad_rows_land_in_rejects_with_their_reason(settings: Settings, tmp_path: Path) -> None:
    import psycopg

    result = ingest_crm(settings, _bad_file(tmp_path), load_spec(_spec(tmp_path, "test_rejects")), progress=False)
    assert (result.rows_read, result.rows_loaded, result.rows_rejected) == (7, 2, 5)
    with psycopg.connect(settings.pg_dsn()) as conn:
        rejects = dict(conn.execute("SELECT row_number, reason FROM offline.ingest_rejects "
                                    "WHERE dataset = 'test_rejects' ORDER BY 1").fetchall())
        stored = conn.execute("SELECT phone_hash FROM offline.test_rejects").fetchall()
        payloads = conn.execute("SELECT payload::text FROM offline.ingest_rejects "
                                "WHERE dataset = 'test_rejects'").fetchall()
    assert sorted(rejects) == [3, 4, 5, 6, 7]
    assert "missing lead id" in rejects[3] and "not a date" in rejects[4] and "label 'perhaps'" in rejects[5]
    assert "below the minimum 18" in rejects[6] and "duplicate lead id and event time" in rejects[7]
    assert all(len(h) == 64 and not h.startswith("981") for (h,) in stored)
    assert not any("981000" in p for (p,) in payloads), "PII must be hashed before it is stored, rejects included"


def test_cli_exits_non_zero_only_when_nothing_loads(stack_env_vars: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "all_bad.csv"
    path.write_text("lead,when,won,age,phone\nB1,2024-01-05,1,3,1\nB2,never,0,40,2\n")
    done = leadscore(["ingest", "crm", str(path), "--spec", str(_spec(tmp_path, "test_cli"))], stack_env_vars)
    assert done.returncode == 1
    assert "loaded 0, rejected 2" in done.stdout and "nothing was loaded" in done.stderr
    assert "Traceback" not in done.stderr
    ok = leadscore(["ingest", "crm", str(_bad_file(tmp_path)), "--spec", str(_spec(tmp_path, "test_cli"))],
                   stack_env_vars)
    assert ok.returncode == 0 and "loaded 2, rejected 5" in ok.stdout


def test_online_equals_offline_after_materialize(settings: Settings, applied_store, xeducation) -> None:  # noqa: ANN001
    import psycopg

    spec, _ = xeducation
    materialize(settings, ["xeducation"])
    with psycopg.connect(settings.pg_dsn()) as conn:
        cur = conn.execute(f"SELECT * FROM {spec.table} ORDER BY lead_id LIMIT 25")
        names = [d.name for d in cur.description]
        offline = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    online = online_features(applied_store, "xeducation_v1", [r["lead_id"] for r in offline])
    for off, on in zip(offline, online, strict=True):
        for name, _ in spec.feature_columns:
            assert on[name] == off[name], (off["lead_id"], name)


def test_leads_without_scoring_consent_never_reach_redis(settings: Settings, tmp_path: Path) -> None:
    import shutil

    import psycopg

    from pipelines.feature_store import FEATURE_REPO, apply, feature_store

    repo = tmp_path / "feature_repo"  # the real repo plus one test dataset, applied to the test registry
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    spec_path = _spec(repo / "datasets", "test_consent", consent="default: false")
    apply(settings, repo)
    store = feature_store(settings, repo)
    ingest_crm(settings, _bad_file(tmp_path), load_spec(spec_path), progress=False)
    assert materialize(settings, ["test_consent"], repo_path=repo)[0].rows_written == 0
    assert online_features(store, "test_consent_v1", ["A1"])[0]["age"] is None
    with psycopg.connect(settings.pg_dsn()) as conn:  # the lead consents: the next run publishes it
        conn.execute("UPDATE compliance.consent SET granted = true, recorded_at = now() "
                     "WHERE lead_id = 'A1' AND purpose = 'scoring'")
    assert materialize(settings, ["test_consent"], repo_path=repo)[0].rows_written == 1
    assert online_features(store, "test_consent_v1", ["A1"])[0]["age"] == 34
    with psycopg.connect(settings.pg_dsn()) as conn:  # consent withdrawn: the next run removes it
        conn.execute("UPDATE compliance.consent SET granted = false, recorded_at = now() "
                     "WHERE lead_id = 'A1' AND purpose = 'scoring'")
    run = materialize(settings, ["test_consent"], repo_path=repo)[0]
    assert run.rows_skipped_no_consent >= 1
    assert online_features(store, "test_consent_v1", ["A1"])[0]["age"] is None


def test_rbi_repo_rate_history_reaches_the_online_store_per_city(settings: Settings, applied_store) -> None:  # noqa: ANN001
    from pipelines.market import NATIONAL, load_repo_rate, read_repo_rate

    changes = read_repo_rate()
    assert changes == sorted(changes) and all(3.0 < rate < 9.0 for _, rate in changes)
    assert load_repo_rate(settings, ["Pune"]) == 2 * len(changes)
    materialize(settings, ["market_context"])
    got = applied_store.get_online_features(features=["market_context:repo_rate_pct"],
                                            entity_rows=[{"city": "Pune"}, {"city": NATIONAL}]).to_dict()
    assert got["repo_rate_pct"] == [changes[-1][1]] * 2
