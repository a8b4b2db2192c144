"""The linear member's model: a logistic regression over a fixed expansion of the encoded features (numpy only).

Serving imports this module (it travels with the model), so it holds only what scoring and explaining need; the fit
is in models/members/linear.py. The expansion, learned from the training rows:

- each numeric feature: median-imputed, clipped to its training 0.5-99.5 % range, standardised, plus hinges
  max(0, z - knot) at its quantiles (a linear spline: bends where the data says) and a missing indicator;
- each categorical: one coefficient per level seen at least `MIN_LEVEL_ROWS` times in training (one-hot; the L2
  penalty shrinks a rare level's coefficient towards 0 by itself), one for missing or unseen.

The log-odds are intercept + the sum of one term per feature, so a lead's contribution of feature f is exactly its
term minus that term's training mean (base value = intercept + the sum of the means): what a compliance reviewer can
read, and what explanations show for this member.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MIN_LEVEL_ROWS = 1
KNOT_QUANTILES = (0.2, 0.4, 0.6, 0.8)


@dataclass
class LinearModel:
    """Coefficients per feature in the encoder's feature order (numerics and categoricals)."""

    features: list[str]
    numeric: dict[str, dict] = field(default_factory=dict)  # median, lo, hi, mean, std, knots, coef, hinge, missing
    categorical: dict[str, list[float]] = field(default_factory=dict)  # [missing/unseen, level 0, level 1, ...]
    intercept: float = 0.0
    term_means: dict[str, float] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> LinearModel:
        return cls(**json.loads(Path(path).read_text()))

    def terms(self, trees: np.ndarray) -> np.ndarray:
        """(rows x features) each feature's term of the log-odds, from the encoded tree matrix (codes for
        categoricals, NaN missing), in feature order; a feature the model does not use has term 0."""
        out = np.zeros((len(trees), len(self.features)))
        for j, name in enumerate(self.features):
            x = trees[:, j]
            if name in self.numeric:
                spec = self.numeric[name]
                missing = ~np.isfinite(x)
                z = (np.clip(np.where(missing, spec["median"], x), spec["lo"], spec["hi"]) - spec["mean"]) / spec["std"]
                term = spec["coef"] * z + spec["missing"] * missing
                for knot, coef in zip(spec["knots"], spec["hinge"], strict=True):
                    term = term + coef * np.maximum(0.0, z - knot)
                out[:, j] = term
            elif name in self.categorical:
                table = np.asarray(self.categorical[name])
                codes = np.where(np.isfinite(x), x, -1).astype("int64") + 1
                codes[(codes < 0) | (codes >= len(table))] = 0
                out[:, j] = table[codes]
        return out

    def logit(self, trees: np.ndarray) -> np.ndarray:
        return self.intercept + self.terms(trees).sum(axis=1)

    def contributions(self, trees: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows x features) contributions and the base per row: base + contributions = logit, exactly."""
        return self.explained(trees)[1:]

    def explained(self, trees: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`logit`, then `contributions`, from one evaluation of the terms (serving explains every score)."""
        terms = self.terms(trees)
        means = np.array([self.term_means.get(f, 0.0) for f in self.features])
        base = self.intercept + float(means.sum())
        return self.intercept + terms.sum(axis=1), terms - means, np.full(len(trees), base)
