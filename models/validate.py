"""The Great Expectations suite a training set must pass before anything is fitted.

Built from the dataset specs (feature_repo/datasets/*.yaml: types, min/max, allowed values, required) for the
features they describe and from the frame's own types for the rest (stream-fed and on-demand features):

- table: at least `min_rows` rows; lead_id, event_timestamp, label and every expected feature present
- each feature: its type; the spec's range / allowed values; share of missing values at most `max_null_rate`
  (0 for `required` features)
- label: only 0 and 1; positive share within [min_positive, max_positive]

Great Expectations 1.x API: an ephemeral context, a pandas data source, a suite, a validation definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from models.preprocess import infer_categorical
from pipelines.spec import DatasetSpec

NUMERIC_TYPES = ["float64", "int64", "Float64", "Int64", "float32", "int32", "float", "int"]
TYPES = {"float": NUMERIC_TYPES, "int": NUMERIC_TYPES, "bool": ["bool", "boolean", "float64", "Int64", "int64"],
         "string": ["str", "string", "object", "category"],
         "date": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]}  # in UTC, zone dropped


@dataclass
class ColumnRule:
    name: str
    kind: str  # string | int | float | bool | date
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = None
    required: bool = False


@dataclass
class SuiteOptions:
    max_null_rate: float = 0.95
    min_positive: float = 0.005
    max_positive: float = 0.995
    min_rows: int = 50


@dataclass
class ValidationReport:
    success: bool
    evaluated: int
    failures: list[str] = field(default_factory=list)  # one readable line per failed expectation
    details: dict = field(default_factory=dict)  # GE's JSON result

    def summary(self) -> str:
        if self.success:
            return f"data validation passed: {self.evaluated} expectations"
        head = "; ".join(self.failures[:3]) + (f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else "")
        return f"data validation failed: {len(self.failures)} of {self.evaluated} expectations: {head}"

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"success": self.success, "summary": self.summary(), "failures": self.failures,
                                    "great_expectations": self.details}, indent=1, default=str))
        return path


def rules_for(frame: pd.DataFrame, specs: list[DatasetSpec], prefer: str | None = None) -> list[ColumnRule]:
    """A rule per feature column: from the spec that describes it (the `prefer`red dataset first), else its type."""
    described: dict[str, ColumnRule] = {}
    for spec in sorted(specs, key=lambda s: s.name == prefer):  # the preferred spec is applied last and wins
        for f in spec.features:
            described[f.name] = ColumnRule(f.name, f.type, f.min, f.max, f.allowed, f.required)
        for p in spec.pii:
            if p.action == "hash" and p.as_feature:
                described[p.as_feature] = ColumnRule(p.as_feature, "string")
    features = [c for c in frame.columns if c not in ("lead_id", "event_timestamp", "label", "created_at")]
    text = set(infer_categorical(frame, features))
    dates = {c for c in features if pd.api.types.is_datetime64_any_dtype(frame[c])}
    return [described.get(c) or ColumnRule(c, "string" if c in text else "date" if c in dates else "float")
            for c in features]


def _failure_line(result) -> str:  # noqa: ANN001 - ExpectationValidationResult
    cfg = result.expectation_config
    kind = cfg.type.replace("expect_", "").replace("_", " ")
    col = cfg.kwargs.get("column")
    res = result.result or {}
    if "unexpected_count" in res and res.get("unexpected_count"):
        sample = ", ".join(repr(v) for v in (res.get("partial_unexpected_list") or [])[:3])
        what = f"{res['unexpected_count']} rows break it (e.g. {sample})"
    elif "observed_value" in res:
        observed = res["observed_value"]
        what = f"observed {observed:.4g}" if isinstance(observed, float) else f"observed {observed}"
    else:
        what = "failed"
    bounds = {k: cfg.kwargs[k] for k in ("min_value", "max_value", "value_set") if cfg.kwargs.get(k) is not None}
    return f"{col or 'table'}: {kind} {bounds or ''} -> {what}".replace("  ", " ")


def validate_training_set(frame: pd.DataFrame, rules: list[ColumnRule],
                          options: SuiteOptions | None = None) -> ValidationReport:
    """Run the suite on the frame; the report says what failed, in words."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    options = options or SuiteOptions()
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = ctx.data_sources.add_pandas("leadscore").add_dataframe_asset("training_set") \
        .add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name="training_set"))
    add = suite.add_expectation
    add(gxe.ExpectTableRowCountToBeBetween(min_value=options.min_rows))
    for col in ("lead_id", "event_timestamp", "label"):
        add(gxe.ExpectColumnToExist(column=col))
    present = set(frame.columns)
    add(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]))
    add(gxe.ExpectColumnValuesToNotBeNull(column="label"))
    add(gxe.ExpectColumnMeanToBeBetween(column="label", min_value=options.min_positive,
                                        max_value=options.max_positive))
    add(gxe.ExpectColumnValuesToNotBeNull(column="lead_id"))
    for rule in rules:
        add(gxe.ExpectColumnToExist(column=rule.name))
        if rule.name not in present:
            continue  # the existence check reports it; the others would only repeat it
        add(gxe.ExpectColumnValuesToBeInTypeList(column=rule.name, type_list=TYPES[rule.kind]))
        add(gxe.ExpectColumnProportionOfNonNullValuesToBeBetween(
            column=rule.name, min_value=1.0 if rule.required else 1.0 - options.max_null_rate))
        if rule.kind in ("int", "float") and (rule.min is not None or rule.max is not None):
            add(gxe.ExpectColumnValuesToBeBetween(column=rule.name, min_value=rule.min, max_value=rule.max))
        if rule.allowed is not None:
            add(gxe.ExpectColumnValuesToBeInSet(column=rule.name, value_set=list(rule.allowed)))
    dated = [r.name for r in rules if r.kind == "date" and r.name in present
             and isinstance(frame[r.name].dtype, pd.DatetimeTZDtype)]
    if dated:  # GE types a zoned column by its values (Timestamp) and matches no type list: check it in UTC, unzoned
        frame = frame.assign(**{c: frame[c].dt.tz_convert("UTC").dt.tz_localize(None) for c in dated})
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name="training_set", data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    failures = [_failure_line(r) for r in result.results if not r.success]
    return ValidationReport(bool(result.success), len(result.results), failures, result.to_json_dict())
