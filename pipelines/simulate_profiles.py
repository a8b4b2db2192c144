"""Simulated broker leads, part 1: the lead profiles (a CRM export) and the hidden intent behind them.

See pipelines/simulate.py for the whole simulator.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pipelines import simulate_text as txt
from pipelines.streams.schema import (
    CRM_STATUSES,
    MESSAGE_CHANNELS,
    SOURCE_TOPICS,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


# topic names and allowed values from the faust-free schema module (records.py imports faust: heavy for the CLI)
TOPICS = SOURCE_TOPICS
WEB, EMAIL, MSG, CALL, CRM = range(5)
CHANNELS = MESSAGE_CHANNELS
STATUSES = CRM_STATUSES
RECORD_NS = ("WebEvent", "EmailEvent", "MessageEvent", "CallEvent", "CrmStatusEvent")
BAD_KINDS = ("unparseable", "missing_field", "unknown_lead", "future_event_time", "invalid_value")
INVALID_VALUES = ("teleport", "carrier_pigeon", "sideways", "maybe_later")

AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.09, 0.38, 0.29, 0.16, 0.08)
EMPLOYMENT = ("salaried", "self_employed", "business", "retired", "student", "other")
EMPLOYMENT_BY_AGE = (  # rows: age band; columns: EMPLOYMENT
    (0.50, 0.05, 0.04, 0.00, 0.36, 0.05),
    (0.70, 0.12, 0.10, 0.00, 0.02, 0.06),
    (0.60, 0.17, 0.16, 0.00, 0.00, 0.07),
    (0.52, 0.18, 0.20, 0.02, 0.00, 0.08),
    (0.22, 0.14, 0.16, 0.42, 0.00, 0.06),
)
CIBIL_BANDS = ((550, "poor"), (650, "fair"), (700, "good"), (750, "very_good"), (901, "excellent"))
PROFILE_COLUMNS = (
    "lead_id", "created_at", "full_name", "phone", "email", "age_band", "annual_income_inr", "employment_type",
    "cibil_score", "cibil_band", "city", "city_tier", "household_size", "profession",
    "consent_scoring", "consent_marketing", "consent_text_analysis",
)
EMAIL_DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "yahoo.co.in", "outlook.com", "rediffmail.com", "hotmail.com")
DAY_US = 86_400_000_000
MIN_US = 60_000_000
IST_US = 19_800_000_000  # UTC+05:30


def _cats(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category index per row of `probs` (rows need not sum to 1)."""
    import numpy as np

    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return (u[:, None] >= cum).sum(axis=1).clip(0, probs.shape[1] - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return 1.0 / (1.0 + np.exp(-x))


def _daytime(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Move each time (µs since epoch) to a waking hour of its IST day: late morning and evening peaks."""
    import numpy as np

    n = len(t)
    hour = np.where(rng.random(n) < 0.5, rng.normal(12.0, 2.2, n), rng.normal(20.3, 1.7, n))
    hour = np.where(rng.random(n) < 0.08, rng.uniform(0, 24, n), hour) % 24
    day0 = (t + IST_US) // DAY_US * DAY_US - IST_US
    return day0 + (hour * 3_600_000_000).astype(np.int64)


def _us(when: datetime) -> int:
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return int(round(when.timestamp() * 1_000_000))




# ---------------------------------------------------------------------------------------------------- profiles
def generate_profiles(n: int, seed: int, start: datetime, days: int = 30) -> tuple[pd.DataFrame, np.ndarray]:
    """`n` lead profiles created over the `days` after `start`, and each lead's hidden intent (0-1), not in the frame.

    Every column is a string, as in a CRM export: missing CIBIL scores are empty strings.
    """
    import numpy as np
    import pandas as pd
    from faker import Faker

    rng = np.random.default_rng([seed, 0])
    age = rng.choice(len(AGE_BANDS), n, p=AGE_P)
    emp = _cats(rng, np.asarray(EMPLOYMENT_BY_AGE)[age])
    prof_name = np.empty(n, dtype=object)
    prof_shift = np.zeros(n)
    for e, name in enumerate(EMPLOYMENT):
        rows = np.flatnonzero(emp == e)
        options = txt.PROFESSIONS[name]
        w = np.array([o[1] for o in options])
        pick = rng.choice(len(options), len(rows), p=w / w.sum())
        prof_name[rows] = np.array([o[0] for o in options], dtype=object)[pick]
        prof_shift[rows] = np.array([o[2] for o in options])[pick]
    cities = list(txt.CITY_WEIGHTS)
    cw = np.array([txt.CITY_WEIGHTS[c] for c in cities], dtype=float)
    city = rng.choice(len(cities), n, p=cw / cw.sum())
    tier = np.array([txt.CITIES[c][0] for c in cities])[city]

    age_shift = np.array([-0.45, -0.1, 0.15, 0.25, 0.05])[age]
    tier_shift = np.array([0.0, 0.22, -0.08, -0.28])[tier]
    log_inc = np.log(800_000) + prof_shift + age_shift + tier_shift + rng.normal(0, 0.5, n)
    income = np.round(np.exp(log_inc).clip(60_000, 50_000_000), -3)

    z_inc = (log_inc - log_inc.mean()) / (log_inc.std() or 1.0)
    score = 722 + 28 * z_inc + np.array([-25, -5, 5, 10, 15])[age] + rng.normal(0, 45, n)
    stressed = rng.random(n) < 0.08  # missed payments: a left tail
    score = np.where(stressed, rng.normal(575, 60, n), score)
    score = np.round(score).clip(300, 900).astype(int)
    missing = rng.random(n) < 0.04 + 0.22 * (emp == EMPLOYMENT.index("student"))
    band = np.array([b for _, b in CIBIL_BANDS], dtype=object)[np.searchsorted([c for c, _ in CIBIL_BANDS], score,
                                                                                    side="right")]
    household = (1 + rng.poisson(np.array([1.4, 1.8, 2.8, 3.0, 2.1])[age])).clip(1, 8)

    end_us = _us(start) + days * DAY_US
    created = _daytime(rng, _us(start) + (rng.random(n) * days * DAY_US).astype(np.int64))
    created = created.clip(_us(start), end_us - 30 * MIN_US)
    intent = rng.beta(1.2, 2.8, n)

    fake = Faker("en_IN")
    fake.seed_instance(seed)
    firsts = np.array(sorted({fake.first_name() for _ in range(600)}), dtype=object)
    lasts = np.array(sorted({fake.last_name() for _ in range(400)}), dtype=object)
    fi, li = rng.integers(0, len(firsts), n), rng.integers(0, len(lasts), n)
    suffix = rng.integers(1, 999, n)
    plain = rng.random(n) < 0.3
    dom = rng.integers(0, len(EMAIL_DOMAINS), n)
    full, mail = [], []
    for i in range(n):
        f, s = firsts[fi[i]], lasts[li[i]]
        full.append(f"{f} {s}")
        local = re.sub(r"[^a-z]", "", f.lower()) + "." + re.sub(r"[^a-z]", "", s.lower())
        mail.append(f"{local}@{EMAIL_DOMAINS[dom[i]]}" if plain[i] else f"{local}{suffix[i]}@{EMAIL_DOMAINS[dom[i]]}")
    phone = rng.integers(6_000_000_000, 10_000_000_000, n)

    def yes(p: float) -> np.ndarray:
        return np.where(rng.random(n) < p, "Yes", "No")

    frame = pd.DataFrame({
        "lead_id": [f"BL-{i:08d}" for i in range(1, n + 1)],
        "created_at": np.datetime_as_string((created // 1_000_000).astype("datetime64[s]"), unit="s"),
        "full_name": full,
        "phone": ["+91" + str(p) for p in phone],
        "email": mail,
        "age_band": np.array(AGE_BANDS, dtype=object)[age],
        "annual_income_inr": income.astype(np.int64).astype(str),
        "employment_type": np.array(EMPLOYMENT, dtype=object)[emp],
        "cibil_score": np.where(missing, "", score.astype(str)),
        "cibil_band": np.where(missing, "", band),
        "city": np.array(cities, dtype=object)[city],
        "city_tier": tier.astype(str),
        "household_size": household.astype(str),
        "profession": prof_name,
        "consent_scoring": yes(0.95),
        "consent_marketing": yes(0.80),
        "consent_text_analysis": yes(0.70),
    }, columns=list(PROFILE_COLUMNS))
    frame["created_at"] = frame["created_at"] + "Z"
    return frame.astype(str), intent


