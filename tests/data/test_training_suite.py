"""The Great Expectations suite that gates training: passes on the shared data, stops a corrupted copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infra.config import Settings
from models.validate import SuiteOptions, rules_for, validate_training_set
from pipelines.spec import load_all_specs, load_spec
from tests.conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.slow
SPECS = REPO / "feature_repo" / "datasets"


def frame(name: str, file: str, nrows: int | None = None) -> pd.DataFrame:
    from models.data import frame_from_file

    return frame_from_file(SHARED_DATA / file, load_spec(SPECS / f"{name}.yaml"), nrows=nrows)


@pytest.fixture(scope="module")
def xeducation() -> pd.DataFrame:
    return frame("xeducation", "xeducation_Leads.csv")


@pytest.mark.parametrize(("name", "file"), [("xeducation", "xeducation_Leads.csv"),
                                            ("health_insurance", "health_insurance_cross_sell_30pct_subset.csv")])
def test_the_suite_passes_on_the_shared_data(name: str, file: str) -> None:
    data = frame(name, file)
    report = validate_training_set(data, rules_for(data, load_all_specs(SPECS), prefer=name))
    assert report.success, report.failures
    assert report.evaluated >= 3 * (len(data.columns) - 3)  # presence, type and nulls per feature at least


CORRUPTIONS = {
    "a value out of the spec's range": (lambda f: f.assign(total_visits=f["total_visits"].where(f.index > 20, -3.0)),
                                        "total_visits: column values to be between"),
    "a label that is not 0/1": (lambda f: f.assign(label=f["label"].where(f.index > 0, 2)),
                                "label: column values to be in set"),
    "one class only": (lambda f: f.assign(label=0), "label: column mean to be between"),
    "a missing column": (lambda f: f.drop(columns=["city"]), "city: column to exist"),
    "a column gone empty": (lambda f: f.assign(country=None), "country: column proportion of non null values"),
    "text in a yes/no column": (lambda f: f.assign(do_not_email=f["do_not_email"].where(f.index > 5, "maybe")),
                                "do_not_email: column values to be in type list"),
    "text in a number column": (lambda f: f.assign(total_visits=f["total_visits"].astype(object).where(
        f.index > 5, "many")), "total_visits: column values to be in type list"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_the_suite_names_what_is_wrong_with_a_corrupted_copy(xeducation: pd.DataFrame, corruption: str) -> None:
    change, expected = CORRUPTIONS[corruption]
    rules = rules_for(xeducation, load_all_specs(SPECS), prefer="xeducation")
    report = validate_training_set(change(xeducation.copy()), rules)
    assert not report.success
    assert any(line.startswith(expected) for line in report.failures), report.failures
    assert report.summary().startswith("data validation failed:")


def test_the_balance_bounds_are_configurable(xeducation: pd.DataFrame) -> None:
    rules = rules_for(xeducation, load_all_specs(SPECS), prefer="xeducation")
    report = validate_training_set(xeducation, rules, SuiteOptions(min_positive=0.5))  # 38.5 % convert here
    assert not report.success and report.failures[0].startswith("label: column mean to be between")


def test_training_stops_before_fitting_with_a_one_line_reason_and_a_saved_report(xeducation: pd.DataFrame,
                                                                                  tmp_path: Path) -> None:
    from models.fit import FitOptions
    from models.train import DataValidationError, train_frame

    settings = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "state"),
                              "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})  # never reached: validation comes first
    broken = xeducation.assign(time_on_website_s=np.where(xeducation.index < 3, -1.0, xeducation["time_on_website_s"]))
    with pytest.raises(DataValidationError) as caught:
        train_frame(settings, broken, "xeducation_v1", FitOptions(trials=0, progress=False))
    message = str(caught.value)
    assert "\n" not in message and "time_on_website_s" in message and "Training stopped" in message
    reports = list((tmp_path / "state" / "reports").glob("validation-xeducation_v1-*.json"))
    assert len(reports) == 1 and '"success": false' in reports[0].read_text()
