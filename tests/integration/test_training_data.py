"""Training sets from the feature store: labels joined to features as of the label's time, on-demand included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from infra.config import Settings
from pipelines.training_data import build_training_set
from tests.conftest import SHARED_DATA, leadscore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def labelled(settings: Settings, applied_store) -> None:  # noqa: ANN001
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        conn.execute("DELETE FROM offline.labels WHERE dataset = 'broker_leads'")
        for lead, income in (("P-1", 1_000_000.0), ("P-2", 2_000_000.0)):
            conn.execute("INSERT INTO offline.lead_demographics (lead_id, event_timestamp, annual_income_inr, city) "
                         "VALUES (%s, %s, %s, 'Pune'), (%s, %s, %s, 'Mumbai')",
                         (lead, T0 - timedelta(days=40), income, lead, T0 + timedelta(days=5), income * 9))
            for days, views in ((-20, 3), (-2, 7), (3, 50)):  # the last one is after the label: must not leak
                conn.execute("INSERT INTO offline.lead_engagement (lead_id, event_timestamp, listing_views_30d, "
                             "emails_sent_30d, emails_opened_30d, first_touch_ts) VALUES (%s, %s, %s, 10, 4, %s)",
                             (lead, T0 + timedelta(days=days), views, (T0 - timedelta(days=30)).timestamp()))
        conn.execute("INSERT INTO offline.labels (dataset, lead_id, event_timestamp, label) VALUES "
                     "('broker_leads', 'P-1', %s, 1), ('broker_leads', 'P-2', %s, 0), "
                     "('broker_leads', 'P-3', %s, 0)", (T0, T0 - timedelta(days=10), T0))


def test_features_are_as_of_each_label_time_with_on_demand_values(settings: Settings, labelled) -> None:
    frame = build_training_set(settings, "lead_scoring_v1").set_index("lead_id")
    assert list(frame.index) == ["P-2", "P-1", "P-3"]  # label time order
    assert frame.loc["P-1", "label"] == 1 and frame.loc["P-2", "label"] == 0
    assert frame.loc["P-1", "listing_views_30d"] == 7  # the row 2 days before, not the one 3 days after
    assert frame.loc["P-2", "listing_views_30d"] == 3  # its label is 10 days earlier: only the -20 d row
    assert frame.loc["P-1", "annual_income_inr"] == 1_000_000.0 and frame.loc["P-1", "city"] == "Pune"
    assert frame.loc["P-1", "email_open_rate_30d"] == pytest.approx(0.4)
    assert frame.loc["P-1", "days_since_first_touch"] == pytest.approx(30.0)
    assert frame.loc["P-2", "days_since_first_touch"] == pytest.approx(20.0)
    assert pd.isna(frame.loc["P-3", "listing_views_30d"]) and pd.isna(frame.loc["P-3", "annual_income_inr"])


def test_xeducation_training_set_has_every_label_and_no_leaking_column(settings: Settings, applied_store) -> None:  # noqa: ANN001
    from pipelines.ingest import ingest_crm
    from pipelines.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "feature_repo" / "datasets" / "xeducation.yaml")
    ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)
    frame = build_training_set(settings, "xeducation_v1")
    assert len(frame) == 9240 and int(frame["label"].sum()) == 3561
    assert set(frame.columns) == {"lead_id", "event_timestamp", "label", *(n for n, _ in spec.feature_columns)}
    assert frame["total_visits"].notna().mean() > 0.95


def test_cli_writes_the_set_and_explains_a_missing_dataset(stack_env_vars: dict[str, str], labelled,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "set.parquet"
    done = leadscore(["features", "training-set", "--service", "lead_scoring_v1", "--out", str(out)], stack_env_vars)
    assert done.returncode == 0, done.stderr
    assert "3 rows (1 positive)" in done.stdout and len(pd.read_parquet(out)) == 3
    bad = leadscore(["features", "training-set", "--service", "lead_scoring_v1", "--dataset", "nothing",
                     "--out", str(out)], stack_env_vars)
    assert bad.returncode == 2 and "no labels for dataset 'nothing'" in bad.stderr and "Traceback" not in bad.stderr
