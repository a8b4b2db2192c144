"""`leadscore promote`: move `@champion` to the `@challenger` version if it is at least as good on the same data.

Both versions score the challenger's held-out test rows (`holdout/test.parquet` of its training run; the split is
a deterministic function of the labels, so a champion trained on the same dataset never saw them either). The
challenger wins if its ROC AUC >= champion's + `min_auc_gain` and its log loss <= champion's +
`max_logloss_increase`. The decision, both sets of figures and the reason are recorded as tags on the challenger
version (and `promotion.replaced_by` on the old champion). With no champion yet, the challenger becomes champion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from infra.config import Settings


@dataclass
class PromotionDecision:
    model_name: str
    challenger: str
    champion: str | None
    promoted: bool
    reason: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # "challenger"/"champion" -> metrics


def _alias_version(client, name: str, alias: str):  # noqa: ANN001, ANN202 - MlflowClient, ModelVersion | None
    from models.registry import alias_version

    return alias_version(client, name, alias)


def _holdout(client, run_id: str):  # noqa: ANN001, ANN202 - pandas DataFrame
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "holdout/test.parquet", tmp)
        except Exception as exc:  # noqa: BLE001 - any download failure means the same thing to the user
            raise ValueError(f"training run {run_id} has no holdout/test.parquet artifact ({exc}): retrain the "
                             "challenger with `leadscore train`") from None
        return pd.read_parquet(path)


def _score(model_name: str, version: str, holdout) -> dict[str, float]:  # noqa: ANN001
    import mlflow

    from models.evaluate import metrics

    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
    scorer = model.unwrap_python_model()
    missing = [f for f in scorer.feature_names if f not in holdout.columns]
    if missing:
        raise ValueError(f"version {version} reads features {missing} that the challenger's held-out data lacks "
                         "(another feature service): compare them yourself and move the alias in the MLflow UI")
    scores = model.predict(holdout[scorer.feature_names])["score"].to_numpy()
    return metrics(holdout["label"].to_numpy(), scores)


def promote(settings: Settings, model_name: str | None = None, min_auc_gain: float = 0.0,
            max_logloss_increase: float = 0.0, dry_run: bool = False) -> PromotionDecision:
    """Compare @challenger with @champion on the challenger's held-out rows; move @champion if it is as good."""
    from mlflow import MlflowClient

    from models.train import configure_mlflow

    configure_mlflow(settings)
    name = model_name or settings.model_name
    client = MlflowClient()
    challenger = _alias_version(client, name, "challenger")
    if challenger is None:
        raise ValueError(f"model {name!r} has no @challenger version: train one first "
                         "(leadscore train --feature-service SERVICE)")
    champion = _alias_version(client, name, "champion")
    decision = PromotionDecision(name, challenger.version, champion.version if champion else None, False, "")
    if champion is None:
        decision.promoted, decision.reason = True, "no champion yet: the challenger becomes champion"
    elif champion.version == challenger.version:
        decision.reason = f"version {challenger.version} is already @champion: nothing to do"
        return decision
    else:
        holdout = _holdout(client, challenger.run_id)
        ch = decision.metrics["challenger"] = _score(name, challenger.version, holdout)
        cp = decision.metrics["champion"] = _score(name, champion.version, holdout)
        auc_ok = ch["roc_auc"] >= cp["roc_auc"] + min_auc_gain
        ll_ok = ch["log_loss"] <= cp["log_loss"] + max_logloss_increase
        decision.promoted = auc_ok and ll_ok
        figures = (f"ROC AUC {ch['roc_auc']:.4f} vs {cp['roc_auc']:.4f} (needs gain >= {min_auc_gain:g}), "
                   f"log loss {ch['log_loss']:.4f} vs {cp['log_loss']:.4f} (allowed increase "
                   f"{max_logloss_increase:g}) on {len(holdout)} held-out leads")
        decision.reason = ("challenger is at least as good: " if decision.promoted else
                           "challenger is not good enough: ") + figures
        if challenger.tags.get("refit_all") == "true":
            decision.reason += (" (the challenger was refitted on every labelled row, these held-out leads included: "
                                "its figures here are optimistic; its run holds the estimate made before the refit)")
    if dry_run:
        return decision
    tags = {"promotion.decision": "promoted" if decision.promoted else "rejected",
            "promotion.reason": decision.reason, "promotion.compared_with": decision.champion or "none",
            "promotion.decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for role, values in decision.metrics.items():
        for key in ("roc_auc", "log_loss", "brier", "pr_auc"):
            tags[f"promotion.{role}_{key}"] = f"{values[key]:.4f}"
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger.version, key, value)
    if decision.promoted:
        client.set_registered_model_alias(name, "champion", challenger.version)
        if champion is not None:
            client.set_model_version_tag(name, champion.version, "promotion.replaced_by", challenger.version)
    return decision
