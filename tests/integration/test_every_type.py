"""A dataset with a feature of every spec type, gaps in each, taken end to end for real: a CRM file ingested by its
spec, applied to Feast, materialized to Redis, trained by `leadscore train` into MLflow, promoted, and scored over
HTTP by the scoring service, from the online store and from inline values of every type."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infra.config import Settings
from tests.conftest import free_ports
from tests.integration.serving_support import create_key, post, run_ok, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "every-type-it"
SPEC = """
name: every_kind
description: a CRM export with a feature of every type and gaps in each (tests)
owner: tests
entity: {column: Lead Ref}
event_timestamp: {column: Created, format: "%d/%m/%Y"}
label: {column: Won, positive: ["Yes"], negative: ["No"]}
consent: {scoring: {default: true, source: tests}}
features:
  - {column: Age, name: age_years, type: int, min: 18, max: 100}
  - {column: Visits, name: visits, type: int, min: 0}
  - {column: Spend, name: spend_inr, type: float, min: 0}
  - {column: Salaried, name: is_salaried, type: bool}
  - {column: City, name: home_city, type: string}
  - {column: Opened, name: account_opened, type: date, format: "%Y-%m-%d"}
"""


def _export(path: Path, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    age = rng.integers(18, 80, n)
    visits = rng.integers(0, 20, n)
    city = rng.choice(["Pune", "Delhi", "Chennai"], n)
    days = rng.integers(0, 400, n)
    opened = pd.Timestamp("2023-12-31") - pd.to_timedelta(days, unit="D")
    z = -2 + 0.03 * (age - 40) + 0.15 * visits + 0.8 * (city == "Pune") - 0.004 * days
    won = rng.random(n) < 1 / (1 + np.exp(-z))
    frame = pd.DataFrame({"Lead Ref": [f"EV-{i:05d}" for i in range(n)],
                          "Created": [f"{1 + i % 28:02d}/{1 + (i // 28) % 12:02d}/2024" for i in range(n)],
                          "Won": np.where(won, "Yes", "No"), "Age": age.astype(str), "Visits": visits.astype(str),
                          "Spend": np.round(rng.gamma(2.0, 500.0, n), 2).astype(str),
                          "Salaried": rng.choice(["Yes", "No"], n), "City": city,
                          "Opened": opened.strftime("%Y-%m-%d")})
    for col in ("Age", "Visits", "Spend", "Salaried", "City", "Opened"):
        frame.loc[rng.random(n) < 0.1, col] = ""  # a gap in every feature
    frame.to_csv(path, index=False)
    return frame


def test_every_type_is_ingested_trained_registered_and_served(settings: Settings, stack_env_vars: dict[str, str],
                                                               tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from pipelines.feature_store import FEATURE_REPO, apply
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.spec import load_spec

    repo = tmp_path / "feature_repo"  # the real repo plus this dataset, applied to the stack's registry
    shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "datasets" / "every_kind.yaml").write_text(SPEC)
    _export(tmp_path / "export.csv")
    apply(settings, repo)
    result = ingest_crm(settings, tmp_path / "export.csv", load_spec(repo / "datasets" / "every_kind.yaml"),
                        progress=False)
    assert result.rows_loaded == 1500 and result.rows_rejected == 0
    materialize(settings, ["every_kind"], repo_path=repo)
    out = run_ok(["train", "--feature-service", "every_kind_v1", "--trials", "0", "--folds", "3", "--max-epochs",
                  "5", "--model-name", MODEL, "--no-progress"], stack_env_vars)
    assert "as @challenger" in out and "phases: " in out
    run_ok(["promote", "--model-name", MODEL], stack_env_vars)
    version = MlflowClient(settings.tracking_uri).get_model_version_by_alias(MODEL, "champion")
    assert version.tags["feature_service"] == "every_kind_v1"
    key = create_key(stack_env_vars, "every-kind")
    with serving(stack_env_vars, free_ports(1)[0], tmp_path / "serving.log", model=MODEL) as url:
        stored = post(url, "/score", {"lead_id": "EV-00007"}, key)
        assert stored.status_code == 200, stored.text
        assert 0 < stored.json()["score"] < 1 and stored.json()["feature_service"] == "every_kind_v1"
        inline = {"age_years": 44, "visits": 7, "spend_inr": 1250.5, "is_salaried": True, "home_city": "Pune",
                  "account_opened": "2026-10-01"}
        full = post(url, "/score", {"lead_id": "EV-00001", "features": inline}, key)
        assert full.status_code == 200, full.text
        gaps = post(url, "/score", {"lead_id": "EV-00002", "features": dict.fromkeys(inline)}, key)
        assert gaps.status_code == 200, gaps.text
        assert full.json()["score"] != gaps.json()["score"]
        assert gaps.json()["missing_features"] == 6  # every type's gap, sent as null
        bad = post(url, "/score", {"lead_id": "EV-00003", "features": {"age_years": "forty"}}, key)
        assert bad.status_code == 422 and "age_years" in bad.text
        bad = post(url, "/score", {"lead_id": "EV-00003", "features": {"account_opened": "31/12/2025"}}, key)
        assert bad.status_code == 422 and "account_opened" in bad.text and "ISO 8601" in bad.text
        explained = post(url, "/score", {"lead_id": "EV-00007", "top_k": 6}, key).json()
        shown = {c["feature"]: c["value"] for c in explained["top_positive"] + explained["top_negative"]}
        opened = _export(tmp_path / "again.csv").set_index("Lead Ref").loc["EV-00007", "Opened"]
        if opened:  # the stored date comes back from Redis as the day it was, shown as ISO 8601 text
            assert shown["account_opened"].startswith(opened)
