"""`leadscore rerank fit`: fit the text re-ranker's blender, measure it with and without text, register it.

For the labelled leads of a dataset (default `broker_leads`, the simulated leads whose messages and CRM outcomes
arrive through the stream worker):

1. the leads are split, seeded and stratified by (label, has text), into reference / fit / test. With
   `split="holdout"` (the default when the champion's run logged its held-out leads) the reference leads are the
   ones the champion was fitted on and only the champion's held-out leads are split into fit / test, so every
   ensemble score the blender is fitted and tested on is out of sample; with `split="random"` all labelled leads
   are split by the shares (more leads to measure on, but most ensemble scores are then in-sample and the
   "without" figures optimistic: `ensemble_in_sample_share` in the run says how many);
2. each fit and test lead's text signal is computed from its nearest messages among REFERENCE leads only (a lead
   never votes for itself; fit and test leads' labels are never read for any signal). The lead's query vector is
   the mean of its messages sent up to its label's time (no text written after the outcome);
3. each lead's ensemble score comes from the registered `<model>@champion`, on the point-in-time training set of
   its feature service (`pipelines.training_data.build_training_set`);
4. the blender (logistic regression on exactly `serving.reranker.Blender.features`) is fitted on the fit leads and
   evaluated on the test leads (ROC AUC, PR AUC, precision@10 %, NDCG@100, with and without the re-ranker);
5. params, metrics, a plot and the split (with each scored lead's neighbours) go to an MLflow run; the blender is
   registered as `<model>-reranker` (what `serving.reranker.load_blender` reads) and gets alias `champion`;
6. `serving.text_signals` is filled for every lead with embedded text, with neighbours among all labelled leads
   (the lead itself excluded), as serving computes it live.

On simulated leads the text carries only the signal the simulator put in it (`pipelines/simulate_text.py`: inbound
tone drawn from the lead's hidden intent), so figures measured on them say that the machinery works, not how much
real brokers' messages would add.

Not imported by the service at request time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from compliance.lineage import record_lineage
from infra.config import Settings
from serving.reranker import NEIGHBOURS_SQL, Blender, SignalParams, query_vector, reranker_name, vote

log = logging.getLogger("leadscore.serving.rerank_fit")
SIMULATED_NOTE = ("on simulated leads the text carries only the signal the simulator put in it "
                  "(pipelines/simulate_text.py): these figures test the machinery, not real brokers' text")
ROLES = ("reference", "fit", "test")


# ---------------------------------------------------------------------------------------------------- pure parts
def split_leads(lead_ids: Sequence[str], strata: Sequence[object], seed: int, reference: float = 0.5,
                fit: float = 0.25) -> dict[str, str]:
    """lead_id -> 'reference' / 'fit' / 'test', the shares taken within each stratum (seeded permutation)."""
    if not (0 <= reference < 1 and 0 < fit < 1 and reference + fit < 1):
        raise ValueError(f"reference={reference} and fit={fit} must be shares that leave leads to test on")
    ids = np.asarray([str(i) for i in lead_ids])
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("lead ids must be unique")
    strata_arr = np.asarray([str(s) for s in strata])
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for stratum in sorted(set(strata_arr.tolist())):
        members = np.sort(ids[strata_arr == stratum])
        members = members[rng.permutation(len(members))]
        n_ref = int(round(len(members) * reference))
        n_fit = int(round(len(members) * fit))
        for i, lead in enumerate(members):
            out[str(lead)] = ROLES[0] if i < n_ref else ROLES[1] if i < n_ref + n_fit else ROLES[2]
    return out


def ndcg_at_k(y: np.ndarray, p: np.ndarray, k: int = 100) -> float:
    """NDCG of the k best-scored leads with binary gains (1 for a conversion); 0 when there is none."""
    y = np.asarray(y, dtype="float64")
    k = min(k, len(y))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-np.asarray(p, dtype="float64"), kind="stable")[:k]
    ideal = float(np.sort(y)[::-1][:k] @ discounts)
    return float(y[order] @ discounts) / ideal if ideal > 0 else 0.0


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), precision among the best 10 %, NDCG@100."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from models.evaluate import top_share

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype="float64")
    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p)),
            "precision_at_10": top_share(y, p, 0.1)[0], "ndcg_at_100": ndcg_at_k(y, p, 100)}


def top_neighbours(rows: Sequence[tuple[str, float, int]], k: int) -> list[str]:
    """The lead ids that vote in `serving.reranker.vote` (best message per lead, k most similar leads)."""
    best: dict[str, float] = {}
    for lead_id, sim, _ in rows:
        best[lead_id] = max(float(sim), best.get(lead_id, -math.inf))
    return [lead for lead, _ in sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:k]]


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int = 0):  # noqa: ANN201 - sklearn LogisticRegression
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed).fit(x, np.asarray(y).astype(int))


# ---------------------------------------------------------------------------------------------------- the job
@dataclass
class FitResult:
    model_name: str
    reranker: str
    version: str
    base_version: str
    run_id: str
    sizes: dict[str, int]
    with_text: dict[str, int]
    without: dict[str, float]
    with_reranker: dict[str, float]
    coef: tuple[float, float, float]
    intercept: float
    params: SignalParams
    signals_written: int
    ensemble_in_sample: float
    seconds: float
    extra: dict = field(default_factory=dict)

    def summary(self) -> str:
        def fmt(m: dict[str, float]) -> str:
            return (f"ROC AUC {m['roc_auc']:.4f}, PR AUC {m['pr_auc']:.4f}, precision@10% {m['precision_at_10']:.3f}, "
                    f"NDCG@100 {m['ndcg_at_100']:.4f}")

        signal_auc = self.extra.get("metrics", {}).get("test_text_only_signal_roc_auc")
        auc = "" if signal_auc is None else f"; text signal alone on test leads with text: ROC AUC {signal_auc:.4f}"
        share = "" if math.isnan(self.ensemble_in_sample) else f", {self.ensemble_in_sample:.0%} in-sample"
        return (f"{self.reranker} version {self.version} is @champion (on {self.model_name} v{self.base_version}, "
                f"blend coef score/text/has_text {self.coef[0]:.3f}/{self.coef[1]:.3f}/{self.coef[2]:.3f}); "
                f"split {self.extra.get('split')} (ensemble scores of fit/test leads{share or ': unknown'}); "
                f"test {self.sizes['test']} leads ({self.with_text['test']} with text): without re-ranker "
                f"{fmt(self.without)} | with {fmt(self.with_reranker)}; fit {self.sizes['fit']}, reference "
                f"{self.sizes['reference']}; {self.signals_written} text signals stored{auc}; {SIMULATED_NOTE}")


def _champion(settings: Settings, model_name: str):  # noqa: ANN202 - (ModelVersion, LeadScorerEnsemble)
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        raise ValueError(f"{model_name} has no @champion: run `leadscore train` and `leadscore promote` "
                         "first") from None
    model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
    return version, model.unwrap_python_model()


def _champion_holdout_ids(version) -> set[str] | None:  # noqa: ANN001 - ModelVersion
    """Lead ids the champion was NOT fitted on (its holdout/test.parquet), or None if unknown."""
    from mlflow import MlflowClient

    from models.promote import _holdout

    try:
        frame = _holdout(MlflowClient(), version.run_id)
    except ValueError:
        return None
    return set(frame["lead_id"].astype(str)) if "lead_id" in frame.columns else None


def _latest_label_per_lead(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.sort_values(["lead_id", "event_timestamp"])
    return frame.drop_duplicates("lead_id", keep="last").reset_index(drop=True)


def _message_vectors(conn, lead_ids: list[str] | None, until: dict[str, pd.Timestamp] | None) -> dict:  # noqa: ANN001
    """lead_id -> (query vector, messages used): the lead's inbound messages, those sent up to `until[lead]` when
    given."""
    if lead_ids is None:
        rows = conn.execute("SELECT lead_id, sent_at, embedding FROM text_store.messages WHERE embedding IS NOT "
                            "NULL AND direction = 'inbound'").fetchall()
    else:
        rows = conn.execute("SELECT lead_id, sent_at, embedding FROM text_store.messages WHERE embedding IS NOT NULL "
                            "AND direction = 'inbound' AND lead_id = ANY(%s)", (lead_ids,)).fetchall()
    by_lead: dict[str, list[np.ndarray]] = {}
    for lead_id, sent_at, embedding in rows:
        if until is not None and lead_id in until and pd.Timestamp(sent_at) > until[lead_id]:
            continue
        embedding = embedding.to_numpy() if hasattr(embedding, "to_numpy") else embedding  # pgvector.Vector
        by_lead.setdefault(lead_id, []).append(np.asarray(embedding, dtype="float32"))
    return {lead: (query_vector(np.vstack(vs)), len(vs)) for lead, vs in by_lead.items()}


def _neighbours(conn, vector: np.ndarray, lead_id: str, pool: int, restrict: str | None):  # noqa: ANN001, ANN202
    clause = f"JOIN {restrict} r ON r.lead_id = n.lead_id" if restrict else ""
    return conn.execute(NEIGHBOURS_SQL.format(restrict=clause), {"q": vector, "pool": pool, "self": lead_id}).fetchall()


def _plot(y: np.ndarray, without: np.ndarray, with_: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, p in (("without re-ranker", without), ("with re-ranker", with_)):
        fpr, tpr, _ = roc_curve(y, p)
        axes[0].plot(fpr, tpr, label=name)
        prec, rec, _ = precision_recall_curve(y, p)
        axes[1].plot(rec, prec, label=name)
        order = np.argsort(-p, kind="stable")
        axes[2].plot(np.arange(1, len(y) + 1) / len(y), np.cumsum(y[order]) / max(y.sum(), 1), label=name)
    axes[0].plot([0, 1], [0, 1], "k:", lw=0.8)
    axes[2].plot([0, 1], [0, 1], "k:", lw=0.8)
    for ax, title, (xl, yl) in zip(axes, ("ROC (test leads)", "precision-recall", "cumulative gains"),
                                   (("false positive rate", "true positive rate"), ("recall", "precision"),
                                    ("share of leads called", "share of conversions")), strict=True):
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(loc="best")
    fig.suptitle("Text re-ranker on held-out leads (simulated text carries only the simulator's signal)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fit_reranker(settings: Settings, model_name: str | None = None, dataset: str = "broker_leads",
                 feature_service: str | None = None, seed: int = 0, reference: float = 0.5, fit: float = 0.25,
                 params: SignalParams | None = None, say: Callable[[str], None] = log.info,
                 split: str = "holdout") -> FitResult:
    """The whole job; see the module docstring. `split`: "holdout" or "random"."""
    import mlflow
    import psycopg
    from pgvector.psycopg import register_vector

    from models.register import set_alias
    from models.train import configure_mlflow
    from pipelines.training_data import build_training_set

    if split not in ("holdout", "random"):
        raise ValueError(f"split must be 'holdout' or 'random', not {split!r}")
    started = time.monotonic()
    configure_mlflow(settings)
    model_name = model_name or settings.model_name
    params = params or SignalParams()
    version, scorer = _champion(settings, model_name)
    feature_service = feature_service or scorer.feature_service or "lead_scoring_v1"
    say(f"champion {model_name} v{version.version} on {feature_service}; building the training set of {dataset}")
    frame = _latest_label_per_lead(build_training_set(settings, feature_service, dataset))
    frame["lead_id"] = frame["lead_id"].astype(str)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    labels = frame.set_index("lead_id")["label"].astype(int)
    scores = pd.Series(scorer.score(frame[scorer.feature_names])["score"].to_numpy(), index=frame["lead_id"])
    holdout = _champion_holdout_ids(version)
    until = dict(zip(frame["lead_id"], frame["event_timestamp"], strict=True))

    with psycopg.connect(settings.pg_dsn(role="train")) as conn:  # training's login (0022)
        register_vector(conn)
        vectors = _message_vectors(conn, frame["lead_id"].tolist(), until)
        has_text = frame["lead_id"].map(lambda i: i in vectors)
        strata = [f"{y}/{int(t)}" for y, t in zip(frame["label"], has_text, strict=True)]
        if split == "holdout" and holdout is None:
            say("the champion's run has no held-out lead ids: falling back to --split random")
            split = "random"
        if split == "holdout":
            held = frame["lead_id"].isin(holdout).to_numpy()
            if held.sum() < 20:
                raise ValueError(f"only {int(held.sum())} of the champion's held-out leads are in {dataset}: use "
                                 "--split random")
            ids = frame["lead_id"].to_numpy()
            roles = {str(i): "reference" for i in ids[~held]}
            roles |= split_leads(ids[held].tolist(), [s for s, h in zip(strata, held, strict=True) if h], seed, 0.0,
                                 fit / (1 - reference))
        else:
            roles = split_leads(frame["lead_id"].tolist(), strata, seed, reference, fit)
        reference_ids = sorted(i for i, r in roles.items() if r == "reference")
        reference_share = len(reference_ids) / len(roles)
        prior = float(labels.loc[reference_ids].mean())
        params = SignalParams(params.k, params.pool, params.shrink, round(prior, 6))
        # serving's pool is over all labelled leads; during fitting only the reference share of them may vote, so
        # the pool of nearest messages is widened by the same factor to keep about as many voters per lead
        fit_pool = int(math.ceil(params.pool / reference_share))
        conn.execute(f"SET hnsw.ef_search = {max(200, fit_pool)}")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")  # neighbours of the lead's own tenant only
        conn.execute("CREATE TEMP TABLE rerank_reference (lead_id text PRIMARY KEY) ON COMMIT DROP")
        with conn.cursor() as cur, cur.copy("COPY rerank_reference (lead_id) FROM STDIN") as copy:
            for lead in reference_ids:
                copy.write_row((lead,))
        rows = []
        for lead, role in roles.items():
            signal, voters = None, []
            if role != "reference" and lead in vectors:
                found = _neighbours(conn, vectors[lead][0], lead, fit_pool, "rerank_reference")
                voters = top_neighbours(found, params.k)
                if any(roles.get(v) != "reference" for v in voters) or lead in voters:
                    raise AssertionError(f"lead {lead}'s neighbours include a non-reference lead: leakage")
                signal = vote(found, params)
            rows.append({"lead_id": lead, "role": role, "has_text": lead in vectors,
                         "n_messages": vectors[lead][1] if lead in vectors else 0, "signal": signal,
                         "neighbours": ",".join(voters), "score": float(scores[lead]),
                         "label_used": role != "test"})
        conn.commit()
    table = pd.DataFrame(rows).sort_values(["role", "lead_id"]).reset_index(drop=True)
    table["label"] = table["lead_id"].map(labels)

    blender = Blender("", (0.0, 0.0, 0.0), 0.0, params, str(version.version))
    fit_rows = table[table["role"] == "fit"]
    test_rows = table[table["role"] == "test"]
    sig = [None if pd.isna(s) else float(s) for s in fit_rows["signal"]]
    lr = fit_logistic(blender.features(fit_rows["score"].to_numpy(), sig), fit_rows["label"].to_numpy(), seed)
    blender.coef = tuple(float(c) for c in lr.coef_[0])
    blender.intercept = float(lr.intercept_[0])
    y_test = test_rows["label"].to_numpy().astype(int)
    without_p = test_rows["score"].to_numpy()
    with_p = blender.blend(without_p, [None if pd.isna(s) else float(s) for s in test_rows["signal"]])
    without, with_reranker = ranking_metrics(y_test, without_p), ranking_metrics(y_test, with_p)
    text_mask = test_rows["has_text"].to_numpy().astype(bool)
    sizes = {r: int((table["role"] == r).sum()) for r in ROLES}
    with_text = {r: int(((table["role"] == r) & table["has_text"]).sum()) for r in ROLES}
    in_sample = (float(np.mean([i not in holdout for i in table.loc[table["role"] != "reference", "lead_id"]]))
                 if holdout is not None else float("nan"))

    name = reranker_name(model_name)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=f"{name}-fit") as run:
        mlflow.set_tags({"leadscore.kind": "reranker", "leadscore.base_model": model_name,
                         "leadscore.base_version": str(version.version), "leadscore.note": SIMULATED_NOTE})
        mlflow.log_params({"dataset": dataset, "feature_service": feature_service, "base_model": model_name,
                           "base_version": version.version, "seed": seed, "split": split,
                           "reference_share": round(reference_share, 4),
                           "fit_share": fit, "k": params.k, "pool": params.pool, "fit_pool": fit_pool,
                           "shrink": params.shrink, "prior": params.prior, "n_reference": sizes["reference"],
                           "n_fit": sizes["fit"], "n_test": sizes["test"], "n_test_with_text": with_text["test"],
                           "n_fit_with_text": with_text["fit"],
                           "features": "logit(score),has_text*(logit(signal)-logit(prior)),has_text"})
        metrics = {f"test_without_{k}": v for k, v in without.items()}
        metrics |= {f"test_with_{k}": v for k, v in with_reranker.items()}
        metrics |= {"coef_score": blender.coef[0], "coef_text": blender.coef[1], "coef_has_text": blender.coef[2],
                    "intercept": blender.intercept}
        if not math.isnan(in_sample):
            metrics["ensemble_in_sample_share"] = in_sample
        if text_mask.sum() > 1 and len(set(y_test[text_mask].tolist())) == 2:
            for key, value in ranking_metrics(y_test[text_mask], without_p[text_mask]).items():
                metrics[f"test_text_only_without_{key}"] = value
            for key, value in ranking_metrics(y_test[text_mask], with_p[text_mask]).items():
                metrics[f"test_text_only_with_{key}"] = value
            signal_only = test_rows["signal"].to_numpy(dtype="float64")[text_mask]
            metrics["test_text_only_signal_roc_auc"] = ranking_metrics(y_test[text_mask], signal_only)["roc_auc"]
        mlflow.log_metrics(metrics)
        split_path = Path(tmp) / "split.parquet"
        table.to_parquet(split_path, index=False)
        mlflow.log_artifact(str(split_path), "split")
        mlflow.log_artifact(str(_plot(y_test, without_p, with_p, Path(tmp) / "reranker.png")), "plots")
        info = mlflow.sklearn.log_model(lr, name="blender", registered_model_name=name)
        run_id = run.info.run_id
    record_lineage(settings, name, run_id, table["lead_id"])  # its split artifact holds these leads' rows
    registered = str(info.registered_model_version)
    blender.version = registered
    set_alias(name, registered, "champion", {"k": params.k, "pool": params.pool, "shrink": params.shrink,
                                             "prior": params.prior, "base_version": str(version.version),
                                             "run_id": run_id, "dataset": dataset})
    written = _store_signals(settings, params, registered)
    result = FitResult(model_name, name, registered, str(version.version), run_id, sizes, with_text, without,
                       with_reranker, blender.coef, blender.intercept, params, written, in_sample,
                       time.monotonic() - started, {"metrics": metrics, "split": split})
    return result


def _store_signals(settings: Settings, params: SignalParams, version: str) -> int:
    """serving.text_signals for every lead with embedded text: neighbours among all labelled leads but itself."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(settings.pg_dsn(role="train")) as conn:  # training's login (0022)
        register_vector(conn)
        conn.execute("SET hnsw.ef_search = 200")
        vectors = _message_vectors(conn, None, None)
        out = [(lead, vote(_neighbours(conn, vec, lead, params.pool, None), params), n, version)
               for lead, (vec, n) in vectors.items()]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO serving.text_signals (lead_id, signal, n_messages, reranker_version, computed_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (lead_id) DO UPDATE SET signal = EXCLUDED.signal, "
                "n_messages = EXCLUDED.n_messages, reranker_version = EXCLUDED.reranker_version, "
                "computed_at = now()", out)
    return len(out)
