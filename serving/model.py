"""The champion model as serving holds it: loaded from the MLflow registry, scored in batches, hot-swapped.

Serving calls the registered pyfunc's own python model (`unwrap_python_model()`: LeadScorerEnsemble from
models/ensemble.py, the code that travels with the model) and never imports training code. `ModelWatcher` polls the
registry every `poll_s` seconds and swaps in the version the alias points to, loading it beside the old one first.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("leadscore.serving.model")


@dataclass
class LoadedModel:
    """One registered version, ready to score."""

    name: str
    version: str
    scorer: Any  # models.ensemble.LeadScorerEnsemble

    @property
    def features(self) -> list[str]:
        return list(self.scorer.feature_names)

    @property
    def feature_service(self) -> str:
        return self.scorer.feature_service

    def frame(self, rows: Sequence[dict[str, Any]]):  # noqa: ANN201 - pandas DataFrame
        import pandas as pd

        return pd.DataFrame.from_records(list(rows), columns=self.features)

    def score(self, rows: Sequence[dict[str, Any]], explain: bool | str = True, top_k: int = 3) -> list[dict[str, Any]]:
        """Per row: score, tier, confidence, members; with `explain` also base value, contributions, a sentence.

        explain: False, "path" (tree-path attributions, the fast default), "shap" (tree SHAP) or True ("path")."""
        method = None if explain is False else ("path" if explain is True else explain)
        if hasattr(self.scorer, "score_records"):  # versions registered with the array path: no pandas per call
            out = self.scorer.score_records(list(rows), top_k=top_k, method=method)
            explanations, missing = out.get("explanations"), out["missing"]
        else:  # an older version: its own frame-based code, which explains with tree SHAP only
            method = None if method is None else "shap"
            df = self.frame(rows)
            if method is not None and hasattr(self.scorer, "score_and_explain"):
                out, explanations = self.scorer.score_and_explain(df, top_k=top_k)
            else:
                out, explanations = self.scorer.score(df), None
                if method is not None:
                    explanations = self.scorer.explain(df, top_k=top_k)
            out = {c: out[c].to_numpy() for c in out.columns}
            missing = df.isna().sum(axis=1).to_numpy()
        scores = out["score"]
        tiers = self.scorer.tier(scores)
        members = list(self.scorer.weights)
        weights = [float(self.scorer.weights[m]) for m in members]
        probs = np.column_stack([out[f"p_{m}"] for m in members])
        agreement = np.clip(1.0 - 2.0 * probs.std(axis=1), 0.0, 1.0)
        confidence = agreement * (1.0 - missing / max(1, len(self.features)))
        results = []
        for i in range(len(scores)):
            results.append({"score": float(scores[i]), "tier": tiers[i], "confidence": round(float(confidence[i]), 4),
                            "missing_features": int(missing[i]),
                            "members": [{"name": m, "probability": float(probs[i, j]), "weight": weights[j]}
                                        for j, m in enumerate(members)]})
        if explanations is not None:
            for row, exp in zip(results, explanations, strict=True):
                row["base_value"] = exp["base_value"]
                row["unattributed"] = exp["unattributed"]
                row["top_positive"] = [_contribution(c) for c in exp["top_positive"]]
                row["top_negative"] = [_contribution(c) for c in exp["top_negative"]]
                row["explanation"] = sentence(row["tier"], row["score"], row["top_positive"], row["top_negative"])
                row["explained_by"] = method
        return results

def _contribution(item: Sequence[Any]) -> dict[str, Any]:
    feature, value, contribution = item
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    return {"feature": feature, "value": value, "contribution": float(contribution)}


def _show(c: dict[str, Any]) -> str:
    value = c["value"]
    if value is None:
        return f"{c['feature']} missing"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{c['feature']} = {value}"


def sentence(tier: str, score: float, positive: list[dict], negative: list[dict]) -> str:
    """One sentence a broker can read: the tier, the score and the strongest reasons each way."""
    parts = []
    if positive:
        parts.append("raised most by " + " and ".join(_show(c) for c in positive[:2]))
    if negative:
        parts.append("lowered most by " + " and ".join(_show(c) for c in negative[:2]))
    why = ", ".join(parts) if parts else "no single feature stands out"
    return f"Tier {tier} (score {score:.2f}): {why}."


def champion_version(name: str, alias: str = "champion") -> str | None:
    """The version the alias points to, or None if it points nowhere."""
    from mlflow import MlflowClient

    from models.registry import alias_version

    found = alias_version(MlflowClient(), name, alias)  # RegistryUnavailable if MLflow did not answer
    return str(found.version) if found is not None else None


def load_version(name: str, version: str) -> LoadedModel:
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return LoadedModel(name, version, model.unwrap_python_model())


class ModelWatcher:
    """Holds the current model; a daemon thread moves it when the registry alias moves."""

    def __init__(self, name: str, alias: str = "champion", poll_s: float = 10.0,
                 on_swap: Callable[[LoadedModel], None] | None = None) -> None:
        self.name, self.alias, self.poll_s = name, alias, poll_s
        self.on_swap = on_swap or (lambda m: None)
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the alias's version if it differs from the one held; True if the model changed."""
        with self._lock:
            version = champion_version(self.name, self.alias)
            if version is None:
                self.last_error = f"model {self.name!r} has no @{self.alias}: train and promote one first"
                return False
            if self.current is not None and self.current.version == version:
                return False
            loaded = load_version(self.name, version)
            self.on_swap(loaded)  # may raise (e.g. its feature service is unknown): the old model stays
            old, self.current, self.last_error = self.current, loaded, None
            log.info("serving %s version %s (was %s)", self.name, version, old.version if old else "none")
            return True

    def start(self) -> None:
        if self.poll_s > 0:
            self._thread = threading.Thread(target=self._run, name="leadscore-model-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving the old model; readiness shows the error
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model refresh failed: %s", self.last_error)

    def stop(self) -> None:
        self._stop.set()
