"""Online features for serving: one pipelined Redis read per batch (Feast's layout), merged with inline values.

Inline values are checked against the model's features before use: unknown names, wrong types (strictly: no text
for a number, no `true` for a number, no `1` for a yes/no feature, no fraction for an integer), non-finite or
unrepresentable numbers, dates that are not ISO 8601 and values outside the dataset spec's `min`/`max`/`allowed` are
refused with the field and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.config import REPO_ROOT, Settings

MAX_INT = 2**53  # integers beyond this are not exact as floats (and 10**400 cannot be one at all)
MAX_TEXT = 200  # characters of a text (categorical) feature value
FEAST_KINDS = {"BOOL": "bool", "INT32": "int", "INT64": "int", "FLOAT32": "float", "FLOAT64": "float"}


class FeatureError(ValueError):
    """Inline feature values the model cannot take: `errors` holds (field, reason) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {r}" for f, r in errors))
        self.errors = errors


@dataclass
class FeatureRules:
    """What each model feature accepts: numeric or text, and the spec's bounds when a dataset spec declares them."""

    numeric: set[str]
    text: set[str]
    dates: set[str] = field(default_factory=set)
    bounds: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    allowed: dict[str, set[str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # the spec's type of a numeric feature: int, float or bool

    @classmethod
    def for_model(cls, features: Sequence[str], categorical: Sequence[str], feature_service: str,
                  dates: Sequence[str] = (), stored_kinds: dict[str, str] | None = None) -> FeatureRules:
        """`stored_kinds`: Feast's type of each stored feature (the online reader's), which a spec may refine."""
        rules = cls(numeric=set(features) - set(categorical) - set(dates), text=set(categorical), dates=set(dates))
        for name, kind in (stored_kinds or {}).items():
            if name in rules.numeric and kind in FEAST_KINDS:
                rules.kinds[name] = FEAST_KINDS[kind]
        spec = _spec_for(feature_service)
        if spec is not None:
            for f in spec.features:
                if f.name in rules.numeric and f.type in ("int", "float", "bool"):
                    rules.kinds[f.name] = f.type
                if f.min is not None or f.max is not None:
                    rules.bounds[f.name] = (f.min, f.max)
                if f.allowed:
                    rules.allowed[f.name] = set(f.allowed)
        return rules

    def check(self, lead_index: int | None, values: dict[str, Any]) -> list[tuple[str, str]]:
        """(field, reason) for each inline value the model cannot take."""
        prefix = "features" if lead_index is None else f"leads[{lead_index}].features"
        errors = []
        for name, value in values.items():
            where = f"{prefix}.{name}"
            if name not in self.numeric and name not in self.text and name not in self.dates:
                errors.append((where, "unknown feature for this model"))
            elif value is None:
                continue
            elif name in self.dates:
                if not isinstance(value, str) or _iso_date(value) is None:
                    errors.append((where, f"expected an ISO 8601 date such as '2026-03-31', got {str(value)[:40]!r}"))
            elif name in self.numeric:
                kind = self.kinds.get(name, "float")
                if kind == "bool":
                    if not isinstance(value, bool):
                        errors.append((where, f"expected true or false, got {_shown(value)}"))
                elif isinstance(value, str | bool):
                    errors.append((where, f"expected {'an integer' if kind == 'int' else 'a number'}, got "
                                          f"{_shown(value)}"))
                elif isinstance(value, int) and abs(value) > MAX_INT:
                    errors.append((where, f"{str(value)[:24]}... is too large (at most {MAX_INT} in magnitude)"))
                elif not math.isfinite(float(value)):
                    errors.append((where, "expected a finite number"))
                elif kind == "int" and not float(value).is_integer():
                    errors.append((where, f"expected an integer, got {value}"))
                elif name in self.bounds:
                    lo, hi = self.bounds[name]
                    if (lo is not None and value < lo) or (hi is not None and value > hi):
                        errors.append((where, f"{value} is out of range [{lo}, {hi}]"))
            elif not isinstance(value, str):
                errors.append((where, f"expected text, got {_shown(value)}"))
            elif len(value) > MAX_TEXT:
                errors.append((where, f"text of {len(value)} characters is over the limit of {MAX_TEXT}"))
            elif name in self.allowed and value not in self.allowed[name]:
                errors.append((where, f"{value[:40]!r} is not one of {sorted(self.allowed[name])[:10]}"))
        return errors


def _shown(value: Any) -> str:  # noqa: ANN401
    """A value as the client sent it, in JSON terms and short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"text {value[:40]!r}" if isinstance(value, str) else repr(value)[:40]


def _iso_date(value: str):  # noqa: ANN202 - datetime | None
    """The date an ISO 8601 text names, or None."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _spec_for(feature_service: str):  # noqa: ANN202 - DatasetSpec | None
    """The dataset spec whose feature service the model reads, if one exists in feature_repo/datasets."""
    from pipelines.spec import SpecError, load_spec

    for path in sorted((REPO_ROOT / "feature_repo" / "datasets").glob("*.yaml")):
        try:
            spec = load_spec(path)
        except SpecError:
            continue
        if spec.feature_service == feature_service:
            return spec
    return None


class OnlineFeatures:
    """Reads a feature service from Redis with short timeouts (a dead Redis fails fast, never hangs)."""

    def __init__(self, settings: Settings, store, feature_service: str, timeout_s: float = 0.5) -> None:  # noqa: ANN001
        import redis

        from pipelines.online import OnlineReader

        self.reader = OnlineReader(store, feature_service)
        # the read-only ACL user, on feature keys only (infra/servers.py)
        self.reader.client = redis.Redis.from_url(settings.redis_url("serving"), socket_timeout=timeout_s,
                                                  socket_connect_timeout=timeout_s, retry_on_timeout=False)
        self.feature_service = feature_service

    def read(self, lead_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[bool]]:
        """(feature dict per lead, whether the store knows the lead) for each id, in order."""
        if not lead_ids:
            return [], []
        rows = self.reader.read(list(lead_ids))
        stored = [any(row[c] is not None for c in self.reader.columns) for row in rows]
        return rows, stored

    def ping(self) -> bool:
        return bool(self.reader.client.ping())
