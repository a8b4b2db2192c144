"""Drift you can cause in `leadscore simulate`: leads created from a date on differ in a known way.

- Covariate shift: their incomes are multiplied (`income_factor`), their web activity too (`activity_factor`:
  more sessions, so more listing views and searches), and a share of them come from a city never seen before
  (`new_city`). What converts them is unchanged.
- Concept drift (`concept`): their funnel follows a hidden intent drawn afresh, unrelated to the intent that still
  drives their behaviour, and affordability (income, CIBIL score, city tier) counts the other way round in it, so
  the old mapping from behaviour and profile to conversion no longer holds.
With no option set nothing changes: the same seed gives the same output as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `leadscore --help` imports this module: numpy and pandas load when drift is applied
    import numpy as np
    import pandas as pd

NEW_CITY_SHARE = 0.3


@dataclass(frozen=True)
class DriftSpec:
    start: datetime | None = None  # leads created at or after this time drift; None: no drift
    income_factor: float = 1.0
    activity_factor: float = 1.0
    new_city: str | None = None
    concept: bool = False

    @property
    def active(self) -> bool:
        return self.start is not None and (self.income_factor != 1.0 or self.activity_factor != 1.0 or
                                           bool(self.new_city) or self.concept)


def apply_drift(profiles: pd.DataFrame, intent: np.ndarray, spec: DriftSpec, seed: int
                ) -> tuple[pd.DataFrame, np.ndarray | None, np.ndarray | None, int]:
    """(profiles, funnel intent or None, activity multiplier or None, drifted lead count)."""
    if not spec.active:
        return profiles, None, None, 0
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 3])  # its own stream: the undrifted draws stay as they were
    created = pd.to_datetime(profiles["created_at"], utc=True)
    drifted = (created >= pd.Timestamp(spec.start)).to_numpy()
    profiles = profiles.copy()
    if spec.income_factor != 1.0:
        income = pd.to_numeric(profiles["annual_income_inr"]).to_numpy("float64")
        shifted = np.round(income * np.where(drifted, spec.income_factor, 1.0), -3).astype(np.int64)
        profiles["annual_income_inr"] = shifted.astype(str)
    if spec.new_city:
        moved = drifted & (rng.random(len(profiles)) < NEW_CITY_SHARE)
        profiles.loc[moved, "city"] = spec.new_city
    activity = np.where(drifted, spec.activity_factor, 1.0) if spec.activity_factor != 1.0 else None
    funnel = np.where(drifted, rng.beta(1.2, 2.8, len(profiles)), intent) if spec.concept else None
    return profiles, funnel, activity, int(drifted.sum())
