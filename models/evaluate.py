"""Metrics and plots of a scored held-out set: what MLflow records for every member and the ensemble.

Metrics: ROC AUC, PR AUC, log loss, Brier, precision and recall in the top 10 % / 20 % of scores, lift per
decile (decile 1 = the best-scored 10 %), expected calibration error (10 equal-width bins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SCORE_CLIP = 1e-6


def top_share(y: np.ndarray, p: np.ndarray, share: float) -> tuple[float, float]:
    """(precision, recall) among the `share` highest-scored leads."""
    k = max(1, int(round(len(p) * share)))
    top = np.argsort(-p, kind="stable")[:k]
    hits = float(np.sum(y[top]))
    return hits / k, hits / max(float(np.sum(y)), 1.0)


def lift_by_decile(y: np.ndarray, p: np.ndarray) -> list[float]:
    """Conversion rate of each score decile (best first) divided by the overall rate."""
    order = np.argsort(-p, kind="stable")
    base = float(np.mean(y)) or 1.0
    return [float(np.mean(y[chunk])) / base for chunk in np.array_split(order, 10)]


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Sum over equal-width score bins of (share of rows) x |mean score - conversion rate|."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(float(p[mask].mean()) - float(y[mask].mean()))
    return float(ece)


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Every metric above for labels y (0/1) and probabilities p."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, "float64"), SCORE_CLIP, 1 - SCORE_CLIP)
    out = {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
           "log_loss": float(log_loss(y, p, labels=[0, 1])), "brier": float(brier_score_loss(y, p)),
           "ece": expected_calibration_error(y, p)}
    for share in (0.1, 0.2):
        precision, recall = top_share(y, p, share)
        out[f"precision_at_{int(share * 100)}"] = precision
        out[f"recall_at_{int(share * 100)}"] = recall
    for i, lift in enumerate(lift_by_decile(y, p), start=1):
        out[f"lift_decile_{i}"] = lift
    return out


def plots(y: np.ndarray, scores: dict[str, np.ndarray], out_dir: Path, importance: dict[str, dict[str, float]],
          shap_values: tuple[np.ndarray, object] | None = None) -> list[Path]:
    """ROC, PR, calibration, lift/gains, feature importance and (if given) SHAP summary PNGs; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y).astype(int)
    paths = []

    def save(fig, name: str) -> None:  # noqa: ANN001
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        paths.append(out_dir / name)

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics(y, p)['roc_auc']:.3f})", lw=2 if name == "ensemble" else 1)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (held-out test)")
    ax.legend(loc="lower right")
    save(fig, "roc.png")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, p in scores.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=name, lw=2 if name == "ensemble" else 1)
    ax.axhline(y.mean(), color="k", ls=":", lw=1, label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (held-out test)")
    ax.legend()
    save(fig, "pr.png")

    fig, ax = plt.subplots(figsize=(5.5, 5))
    edges = np.linspace(0, 1, 11)
    for name, p in scores.items():
        which = np.clip(np.digitize(p, edges) - 1, 0, 9)
        xs = [p[which == b].mean() for b in range(10) if (which == b).any()]
        ys = [y[which == b].mean() for b in range(10) if (which == b).any()]
        ax.plot(xs, ys, "o-", label=name, lw=2 if name == "ensemble" else 1, ms=3)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="mean score in bin", ylabel="conversion rate", title="Calibration (held-out test)")
    ax.legend()
    save(fig, "calibration.png")

    main = scores.get("ensemble", next(iter(scores.values())))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
    ax1.bar(range(1, 11), lift_by_decile(y, main))
    ax1.axhline(1, color="k", ls=":", lw=1)
    ax1.set(xlabel="score decile (1 = best)", ylabel="lift", title="Lift by decile")
    order = np.argsort(-main, kind="stable")
    gains = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1)])
    ax2.plot(np.linspace(0, 1, len(gains)), gains, label="model")
    ax2.plot([0, 1], [0, 1], "k:", lw=1, label="random")
    ax2.set(xlabel="share of leads contacted (best first)", ylabel="share of conversions", title="Cumulative gains")
    ax2.legend()
    save(fig, "lift_gains.png")

    if importance:
        fig, axes = plt.subplots(1, len(importance), figsize=(5.5 * len(importance), 6), squeeze=False)
        for ax, (name, imp) in zip(axes[0], importance.items(), strict=True):
            top = sorted(imp.items(), key=lambda kv: kv[1])[-20:]
            ax.barh([k for k, _ in top], [v for _, v in top])
            ax.set(title=f"{name}: share of total gain", xlabel="gain share")
        save(fig, "feature_importance.png")

    if shap_values is not None:
        import shap

        values, frame = shap_values
        shap.summary_plot(values, frame, show=False, max_display=20)
        fig = plt.gcf()
        fig.suptitle("Per-lead contributions (log-odds, boosters by ensemble weight)")
        save(fig, "shap_summary.png")
    return paths
