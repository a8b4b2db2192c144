"""`leadscore explain`: a registered model's score, tier and top signed contributions for leads in a file.

The explanation itself lives in the model (LeadScorerEnsemble.explain: tree-SHAP contributions of the boosters,
by ensemble weight, in log-odds), so serving gives the same answer; this is the command-line view of it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from infra.config import Settings


def load_scorer(settings: Settings, model_uri: str):  # noqa: ANN201 - (pyfunc model, LeadScorerEnsemble)
    import mlflow

    from models.train import configure_mlflow

    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(model_uri)
    return model, model.unwrap_python_model()


def explain_frame(scorer, frame: pd.DataFrame, top_k: int = 5) -> list[dict]:  # noqa: ANN001 - LeadScorerEnsemble
    """Per lead: lead_id (if given), score, tier and the model's explanation."""
    scores = scorer.score(frame)["score"].to_numpy()
    tiers = scorer.tier(scores)
    out = []
    for i, explanation in enumerate(scorer.explain(frame, top_k=top_k)):
        row = {"score": round(float(scores[i]), 4), "tier": tiers[i], "base_value": explanation["base_value"],
               "top_positive": explanation["top_positive"], "top_negative": explanation["top_negative"],
               "unattributed": explanation["unattributed"]}
        if "lead_id" in frame.columns:
            row = {"lead_id": frame["lead_id"].iloc[i], **row}
        out.append(row)
    return out


def read_leads(path: Path, rows: int) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist: give a .parquet or .csv file of leads with the model's features")
    frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    return frame.head(rows).reset_index(drop=True)
