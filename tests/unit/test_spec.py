"""Dataset specs: the shipped ones load, and a wrong spec says which field and why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.spec import SpecError, load_all_specs, load_spec
from pipelines.validate import check_chunk

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "feature_repo" / "datasets"
SHARED = REPO.parent / "shared" / "data"


def test_shipped_specs_load_and_keep_leaks_out_of_features() -> None:
    specs = {s.name: s for s in load_all_specs(DATASETS)}
    assert set(specs) >= {"xeducation", "health_insurance"}
    xe = specs["xeducation"]
    leaking = {"Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index", "Asymmetrique Profile Index",
               "Asymmetrique Activity Score", "Asymmetrique Profile Score", "Last Activity", "Last Notable Activity"}
    assert set(xe.leaks_label) == leaking
    assert not leaking & {f.column for f in xe.features}
    assert xe.feature_service == "xeducation_v1"


@pytest.mark.parametrize("name", ["xeducation_Leads.csv", "health_insurance_cross_sell_30pct_subset.csv",
                                  "olist_marketing_qualified_leads.csv"])
def test_every_column_of_the_shared_files_is_accounted_for(name: str) -> None:
    spec = next(s for s in load_all_specs(DATASETS) if name.startswith(s.name.split("_")[0]))
    header = pd.read_csv(SHARED / name, nrows=0).columns
    assert set(header) == spec.known_columns(), "a column is neither feature, label, PII, leak, consent nor ignored"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


BASE = """
name: demo
description: d
owner: o
entity: {column: id}
event_timestamp: {column: ts}
features:
  - {column: a, name: a, type: int}
"""


def test_a_leaking_column_used_as_a_feature_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="leak the label and cannot be features"):
        load_spec(_write(tmp_path, BASE + "leaks_label: [a]\n"))


def test_an_unknown_field_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"field `colour`: Extra inputs are not permitted"):
        load_spec(_write(tmp_path, BASE + "colour: blue\n"))


def test_a_feature_name_must_be_snake_case(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"field `features.0.name`.*lower_snake_case"):
        load_spec(_write(tmp_path, BASE.replace("name: a,", "name: Bad Name,")))


def test_timestamp_needs_a_column_or_a_default(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="event_timestamp"):
        load_spec(_write(tmp_path, BASE.replace("event_timestamp: {column: ts}", "event_timestamp: {}")))


def test_missing_spec_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist: write one"):
        load_spec(tmp_path / "nope.yaml")


def test_check_chunk_gives_each_bad_row_a_reason_naming_the_column(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, """
name: demo
description: d
owner: o
null_values: ["", "Select"]
entity: {column: id}
event_timestamp: {column: ts}
label: {column: y}
pii:
  - {column: phone, action: hash, as_feature: phone_hash}
  - {column: name, action: drop}
features:
  - {column: age, name: age, type: int, min: 18, max: 110, required: true}
  - {column: inc, name: income, type: float, min: 0}
  - {column: kind, name: kind, type: string, allowed: [a, b]}
  - {column: flag, name: flag, type: bool}
"""))
    raw = pd.DataFrame({
        "id":    ["L1", "", "L3", "L4", "L5", "L6", "L7", "L8", "L9"],
        "ts":    ["2024-01-01"] * 6 + ["not a date", "2999-01-01", "2024-01-01"],
        "y":     ["1", "0", "maybe", "1", "0", "1", "1", "1", "0"],
        "age":   ["30", "30", "30", "abc", "200", "30", "30", "30", "Select"],
        "inc":   ["1.5", "1", "1", "1", "1", "-5", "1", "1", "1"],
        "kind":  ["a", "a", "a", "a", "a", "c", "a", "a", "a"],
        "flag":  ["Yes", "No", "no", "yes", "yes", "yes", "yes", "yes", "yes"],
        "phone": ["98100 00000"] * 9,
        "name":  ["Asha"] * 9,
    }, index=range(1, 10))
    checked = check_chunk(raw, spec, 1, b"k" * 32)
    assert checked.features["lead_id"].tolist() == ["L1"]
    reasons = dict(zip(checked.rejects["row_number"], checked.rejects["reason"], strict=True))
    assert "missing lead id (column 'id')" in reasons[2]
    assert "label 'maybe' (column 'y')" in reasons[3]
    assert "feature 'age' (column 'age'): 'abc' is not a number" in reasons[4]
    assert "above the maximum 110" in reasons[5]
    assert "feature 'income' (column 'inc') = -5 is below the minimum 0" in reasons[6]
    assert "not a date (column 'ts')" in reasons[7]
    assert "in the future" in reasons[8]
    assert "feature 'age' (column 'age') is required but missing" in reasons[9]
    row = checked.features.iloc[0]
    assert row["phone_hash"] != "98100 00000" and len(row["phone_hash"]) == 64
    assert all("Asha" not in str(p) and "98100" not in str(p) for p in checked.rejects["payload"])
    assert checked.labels.tolist() == [1]


def test_olist_labels_come_from_the_closed_deals_file() -> None:
    from models.data import frame_from_file

    spec = load_spec(DATASETS / "olist.yaml")
    leads = pd.read_csv(SHARED / "olist_marketing_qualified_leads.csv", dtype=str)
    deals = pd.read_csv(SHARED / "olist_closed_deals.csv", dtype=str)
    frame = frame_from_file(SHARED / "olist_marketing_qualified_leads.csv", spec)
    assert len(frame) == len(leads) == 8000
    assert frame["label"].sum() == deals["mql_id"].drop_duplicates().isin(set(leads["mql_id"])).sum() > 0
    won = set(deals["mql_id"])
    assert (frame["label"] == frame["lead_id"].isin(won)).all()
    leaking = set(deals.columns) - {"mql_id"}  # known only once the deal closes
    assert not leaking & {c for c in frame.columns} and not leaking & spec.known_columns()


def test_a_label_file_is_read_from_the_ingested_files_folder(tmp_path: Path) -> None:
    from models.data import frame_from_file

    spec = load_spec(_write(tmp_path, BASE + "label: {column: id, matches: {file: won.csv, column: lead}}\n"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "crm.csv").write_text("id,ts,a\nL1,2024-01-01,1\nL2,2024-01-01,2\nL3,2024-01-01,3\n")
    with pytest.raises(SpecError, match=r"`label.matches.file` 'won.csv' does not exist \(looked for .*data/won.csv"):
        frame_from_file(tmp_path / "data" / "crm.csv", spec)
    (tmp_path / "data" / "won.csv").write_text("lead;amount\nL3;1,5\nL9;2\n")  # its own dialect, detected
    frame = frame_from_file(tmp_path / "data" / "crm.csv", spec)
    assert frame["label"].tolist() == [0, 0, 1]


@pytest.mark.parametrize(("block", "message"), [
    ("csv: {separator: ';;'}", r"field `csv.separator`: .*single character"),
    ("csv: {encoding: klingon}", r"field `csv.encoding`: .*not an encoding Python knows"),
    ("csv: {decimal: ',', thousands: ','}", r"cannot be the same character"),
    ("csv: {delimiter: ';'}", r"field `csv.delimiter`: Extra inputs are not permitted"),
    ("label: {column: a, positive: [1], matches: {file: f.csv, column: x}}", r"`positive` and `negative` do not"),
])
def test_a_wrong_csv_or_label_block_names_the_field(tmp_path: Path, block: str, message: str) -> None:
    text = BASE.replace("{column: a, name: a,", "{column: b, name: b,")  # `a` free to be the label
    with pytest.raises(SpecError, match=message):
        load_spec(_write(tmp_path, text + block + "\n"))


def test_a_date_feature_is_parsed_by_its_format_or_iso_and_a_bad_one_is_rejected_with_the_reason(
        tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, BASE + """  - {column: d, name: opened, type: date, format: "%d/%m/%Y"}
  - {column: e, name: renewed, type: date}
"""))
    raw = pd.DataFrame({"id": ["L1", "L2", "L3", "L4"], "ts": ["2024-01-01"] * 4, "a": ["1"] * 4,
                        "d": ["31/12/2023", "", "2023-12-31", "01/02/2023"],
                        "e": ["2023-06-01T10:00:00+05:30", "2023-06-02", "2023-06-03", "someday"]},
                       index=range(1, 5))
    checked = check_chunk(raw, spec, 1, b"k" * 32)
    assert checked.features["lead_id"].tolist() == ["L1", "L2"]
    opened = checked.features["opened"]
    assert opened.iloc[0] == pd.Timestamp("2023-12-31", tz="UTC") and pd.isna(opened.iloc[1])  # a gap stays a gap
    assert checked.features["renewed"].iloc[0] == pd.Timestamp("2023-06-01 04:30", tz="UTC")  # zoned -> UTC
    reasons = dict(zip(checked.rejects["row_number"], checked.rejects["reason"], strict=True))
    assert reasons[3] == "feature 'opened' (column 'd'): '2023-12-31' is not a date (expected format %d/%m/%Y)"
    assert reasons[4] == "feature 'renewed' (column 'e'): 'someday' is not a date"


@pytest.mark.parametrize(("feature", "message"), [
    ("{column: a, name: a, type: int, format: '%Y'}", "`format` is for date features"),
    ("{column: a, name: a, type: date, min: 0}", "`min`/`max` are for int and float features"),
    ("{column: a, name: a, type: bool, allowed: [x]}", "`allowed` is for string features")])
def test_an_option_of_another_type_is_refused(tmp_path: Path, feature: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(_write(tmp_path, BASE.replace("{column: a, name: a, type: int}", feature)))
