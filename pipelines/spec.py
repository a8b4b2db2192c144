"""The dataset spec: how a CRM export's columns become a lead's entity key, timestamp, label and features.

A spec is a YAML file (see `feature_repo/datasets/*.yaml` and docs/bring-your-own-data.md). It is the one contract
between a file and LeadScore: `leadscore ingest crm FILE --spec SPEC` loads by it, and `feature_repo/crm_datasets.py`
generates the dataset's Feast feature view and feature service from it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FeatureType = Literal["string", "int", "float", "bool", "date"]
SQL_TYPES = {"string": "text", "int": "bigint", "float": "double precision", "bool": "boolean",
             "date": "timestamptz"}


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvSpec(_Strict):
    """How a CSV is written; anything left out is detected from the file (pipelines/csv_read.py)."""

    separator: str | None = Field(None, description="field separator, e.g. ',', ';', '\\t' or '|'")
    quote: str | None = Field(None, description="quote character, e.g. '\"' or \"'\"")
    encoding: str | None = Field(None, description="text encoding, e.g. utf-8, utf-8-sig, cp1252, latin-1")
    decimal: Literal[".", ","] | None = Field(None, description="decimal mark of numbers")
    thousands: Literal[".", ",", " ", "'"] | None = Field(None, description="thousands separator of numbers")

    @field_validator("separator", "quote")
    @classmethod
    def _one_char(cls, v: str | None) -> str | None:
        if v is not None and len(v) != 1:
            raise ValueError(f"{v!r} must be a single character (write a tab as \"\\t\")")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        import codecs

        if v is not None:
            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"{v!r} is not an encoding Python knows (e.g. utf-8, cp1252, latin-1)") from None
        return v

    @model_validator(mode="after")
    def _distinct(self) -> CsvSpec:
        if self.decimal and self.decimal == self.thousands:
            raise ValueError("`decimal` and `thousands` cannot be the same character")
        if self.decimal and self.decimal == self.separator:
            raise ValueError("`decimal` cannot be the field separator")
        return self


class EntitySpec(_Strict):
    column: str | None = Field(None, description="the file's column holding the lead's id")
    generate: Literal["row_hash", "row_number"] | None = Field(
        None, description="no id column: row_hash = keyed hash of the row's values (rh-...), "
        "row_number = <dataset>-<n> (stable only while the file's row order is)")
    hash: bool = Field(False, description="store a keyed hash of the id instead of the id (ids that are PII)")

    @model_validator(mode="after")
    def _one_source(self) -> EntitySpec:
        if (self.column is None) == (self.generate is None):
            raise ValueError("give exactly one of `column` (the lead id's column) or `generate` (row_hash or "
                             "row_number, when the file has no id)")
        if self.generate and self.hash:
            raise ValueError("`hash` applies to an id column; generated ids are already pseudonymous")
        return self


class TimestampSpec(_Strict):
    column: str | None = Field(None, description="the file's column with the row's event time")
    format: str | None = Field(None, description="strptime format; default: ISO 8601 / pandas inference")
    default: datetime | None = Field(None, description="event time for every row when the file has none")

    @model_validator(mode="after")
    def _one_source(self) -> TimestampSpec:
        if (self.column is None) == (self.default is None):
            raise ValueError("give exactly one of `column` (a timestamp column) or `default` (one time for all rows)")
        if self.default is not None and self.default.tzinfo is None:
            object.__setattr__(self, "default", self.default.replace(tzinfo=UTC))
        return self


class MatchesSpec(_Strict):
    """The label comes from a second file: positive when the row's value appears in that file's column."""

    file: str = Field(description="the second file; a relative path is resolved from the ingested file's folder")
    column: str = Field(description="the column of the second file holding the values to match")
    csv: CsvSpec | None = Field(None, description="how the second file is written (default: detected)")


class LabelSpec(_Strict):
    column: str
    positive: list[str | int | float | bool] = Field(default_factory=lambda: [1, "1", "yes", "Yes", True])
    negative: list[str | int | float | bool] = Field(default_factory=lambda: [0, "0", "no", "No", False])
    matches: MatchesSpec | None = Field(None, description="positive if `column`'s value is in another file's column, "
                                        "negative otherwise")

    @model_validator(mode="after")
    def _values_or_matches(self) -> LabelSpec:
        if self.matches and self.model_fields_set & {"positive", "negative"}:
            raise ValueError("with `matches`, a row is positive when its value is in the other file and negative "
                             "otherwise: `positive` and `negative` do not apply")
        return self


class FeatureSpec(_Strict):
    column: str = Field(description="the file's column")
    name: str = Field(description="the feature name (lower_snake_case)")
    type: FeatureType
    description: str = ""
    min: float | None = None
    max: float | None = None
    allowed: list[str] | None = Field(None, description="allowed values of a string feature")
    required: bool = Field(False, description="reject rows where it is missing")
    format: str | None = Field(None, description="strptime format of a `date` feature; default: ISO 8601 / pandas "
                               "inference")
    personal: Literal["age", "date_of_birth"] | None = Field(
        None, description="this feature tells the lead's age (years, int/float) or date of birth (date): leads under "
        "18 are not profiled without parental consent (DPDP Act s.9)")

    @model_validator(mode="after")
    def _options_fit_type(self) -> FeatureSpec:
        if self.format is not None and self.type != "date":
            raise ValueError(f"`format` is for date features; {self.name!r} is {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise ValueError(f"`min`/`max` are for int and float features; {self.name!r} is {self.type}")
        if self.allowed is not None and self.type != "string":
            raise ValueError(f"`allowed` is for string features; {self.name!r} is {self.type}")
        if self.personal == "age" and self.type not in ("int", "float"):
            raise ValueError(f"`personal: age` is for int or float features; {self.name!r} is {self.type}")
        if self.personal == "date_of_birth" and self.type != "date":
            raise ValueError(f"`personal: date_of_birth` is for date features; {self.name!r} is {self.type}")
        return self

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} is not a lower_snake_case name (letters, digits, _; starts with a letter)")
        return v


class PiiSpec(_Strict):
    column: str
    action: Literal["hash", "drop"]
    as_feature: str | None = Field(None, description="keep the keyed hash under this feature name (action: hash)")


class ConsentSpec(_Strict):
    column: str | None = Field(None, description="column whose value says whether the lead consented")
    granted_values: list[str | int | bool] = Field(default_factory=lambda: ["Yes", "yes", "Y", 1, True, "1"])
    default: bool | None = Field(None, description="consent when there is no column (say why in `source`)")
    source: str = Field(description="where the consent was captured, for the audit trail")
    notice: str | None = Field(None, description="the notice version consent was given under, e.g. "
                               "lead-processing@1 (compliance/notices/; default: the newest)")

    @model_validator(mode="after")
    def _column_or_default(self) -> ConsentSpec:
        if self.column is None and self.default is None:
            raise ValueError("give a consent `column` or a `default` (with a `source` that says why)")
        return self


class DatasetSpec(_Strict):
    name: str = Field(description="dataset name: offline table, feature view and label set")
    description: str
    owner: str
    version: int = Field(1, ge=1, description="feature service version: <name>_v<version>")
    feature_view: str | None = Field(None, description="load into the table of this hand-written feature view "
                                     "(feature_repo/feature_views.py) instead of generating one for the dataset")
    source_url: str | None = None
    ttl_days: int = Field(3650, ge=1)
    retention_days: int | None = Field(None, ge=1, description="erase a lead this long after its latest row here "
                                       "(after a 48-hour notice; `leadscore privacy retention`); default: only the "
                                       "inactivity period")
    tenant: str | None = Field(None, description="the tenant (broker firm or CRM) the leads belong to; "
                               "`ingest crm --tenant` overrides it; default: the `default` tenant")
    tenant_column: str | None = Field(None, description="a column naming each row's tenant (one export of several "
                                      "broker firms); a row whose value is no tenant name is rejected; not with "
                                      "`tenant` or `--tenant`")
    broker_column: str | None = Field(None, description="a column naming the broker each lead is assigned to (the "
                                      "CRM's owner or agent id: an opaque staff id, 1-64 of A-Z a-z 0-9 _ . : @ -); "
                                      "a broker signed into the console sees only their own leads")
    null_values: list[str] = Field(default_factory=lambda: [""], description="strings read as missing")
    csv: CsvSpec | None = Field(None, description="separator, quote, encoding, decimal mark; default: detected")
    entity: EntitySpec
    event_timestamp: TimestampSpec
    label: LabelSpec | None = None
    features: list[FeatureSpec]
    pii: list[PiiSpec] = Field(default_factory=list)
    leaks_label: list[str] = Field(default_factory=list, description="columns filled after the outcome: never stored")
    ignore: list[str] = Field(default_factory=list, description="columns deliberately not used")
    consent: dict[Literal["scoring", "marketing_contact", "text_analysis", "parental_consent"], ConsentSpec] = Field(
        default_factory=dict)

    @field_validator("name")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not IDENTIFIER.match(v):
            raise ValueError(f"{v!r} is not a lower_snake_case name")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> DatasetSpec:
        names = [f.name for f in self.features] + [p.as_feature for p in self.pii if p.as_feature]
        if len(names) != len(set(names)):
            raise ValueError("two features share a name")
        leaks = set(self.leaks_label)
        used = {f.column for f in self.features}
        if used & leaks:
            raise ValueError(f"columns {sorted(used & leaks)} leak the label and cannot be features")
        pii = {p.column for p in self.pii}
        if used & pii:
            raise ValueError(f"columns {sorted(used & pii)} are PII: list them under `pii` only, not as features")
        if self.label and self.label.column in used:
            raise ValueError(f"the label column {self.label.column!r} cannot also be a feature")
        if self.tenant_column and self.tenant:
            raise ValueError("`tenant` and `tenant_column` cannot both be set: one tenant for the file, or one per row")
        marked = [f.name for f in self.features if f.personal is not None]
        if len(marked) > 1:
            raise ValueError(f"features {marked} are all marked `personal`: mark the one that tells the age")
        return self

    @property
    def table(self) -> str:
        return f"offline.{self.feature_view or self.name}"

    @property
    def feature_service(self) -> str:
        return f"{self.name}_v{self.version}"

    @property
    def feature_columns(self) -> list[tuple[str, str]]:
        """(feature name, LeadScore type) for every stored feature, hashed PII kept as features included."""
        cols = [(f.name, f.type) for f in self.features]
        return cols + [(p.as_feature, "string") for p in self.pii if p.action == "hash" and p.as_feature]

    def known_columns(self) -> set[str]:
        """Every column of the file the spec names (a generated id names none)."""
        cols = {*self.leaks_label, *self.ignore, *(f.column for f in self.features)}
        if self.entity.column:
            cols.add(self.entity.column)
        cols |= {p.column for p in self.pii} | {c.column for c in self.consent.values() if c.column}
        if self.event_timestamp.column:
            cols.add(self.event_timestamp.column)
        if self.label:
            cols.add(self.label.column)
        if self.tenant_column:
            cols.add(self.tenant_column)
        if self.broker_column:
            cols.add(self.broker_column)
        return cols

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, v: str | None) -> str | None:
        from compliance.tenants import check_tenant

        return None if v is None else check_tenant(v)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and check a spec; problems raise SpecError with the file, the field and the reason."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec {path} does not exist: write one (see docs/bring-your-own-data.md)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"spec {path} is not valid YAML: {exc}") from None
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise SpecError(f"spec {path}: field `{where}`: {first['msg']}{more}") from None


def load_all_specs(folder: str | Path) -> list[DatasetSpec]:
    return [load_spec(p) for p in sorted(Path(folder).glob("*.yaml"))]
