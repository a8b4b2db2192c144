"""Log the ensemble as one MLflow pyfunc model (signature, input example, its own code) and register it.

The model's code is a copy of only the serving-safe modules (models/__init__.py, ensemble.py, paths.py,
preprocess.py, tabular_net.py) in a `models` package, passed as `code_paths`: `mlflow.pyfunc.load_model` works in a
fresh process without this repository, and the registered model cannot reach training code even by accident.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import pandas as pd

SERVING_MODULES = ("__init__.py", "boosters.py", "ensemble.py", "forest.py", "paths.py", "preprocess.py",
                   "tabular_net.py")
PACKAGES = {"mlflow": "mlflow", "numpy": "numpy", "pandas": "pandas", "xgboost": "xgboost-cpu",
            "lightgbm": "lightgbm", "torch": "torch", "scipy": "scipy", "numba": "numba"}


def pip_requirements() -> list[str]:
    """The exact versions installed here of what the ensemble imports (so MLflow need not guess them)."""
    reqs = []
    for name, dist in PACKAGES.items():
        for candidate in (dist, name):
            try:
                reqs.append(f"{candidate}=={metadata.version(candidate).split('+')[0]}")
                break
            except metadata.PackageNotFoundError:
                continue
    return reqs


def serving_code(dest: Path) -> Path:
    """A `models` package holding only the modules serving needs; returns its path for code_paths."""
    package = Path(dest) / "models"
    package.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    for name in SERVING_MODULES:
        shutil.copy2(here / name, package / name)
    return package


def input_example(frame: pd.DataFrame, features: list[str], rows: int = 5) -> pd.DataFrame:
    return frame[features].head(rows).reset_index(drop=True)


def _column(col, categorical: list[str]):  # noqa: ANN001, ANN202 - mlflow ColSpec in and out
    """Every feature column must be present (values may be missing); text is string, numbers double."""
    from mlflow.types import ColSpec, DataType

    if col.name in categorical:
        kind = DataType.string
    elif col.type == DataType.boolean:
        kind = DataType.boolean
    else:
        kind = DataType.double
    return ColSpec(kind, col.name, required=True)


def log_ensemble(bundle: Path, example: pd.DataFrame, registered_name: str | None):  # noqa: ANN201 - ModelInfo
    """Log the pyfunc model in the active run (name "model") and, if a name is given, register a new version."""
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import Schema

    from models.ensemble import LeadScorerEnsemble

    loaded = LeadScorerEnsemble.from_bundle(bundle)
    inferred = infer_signature(example, loaded.score(example).reset_index(drop=True))
    signature = ModelSignature(inputs=Schema([_column(c, loaded.categorical_features) for c in inferred.inputs.inputs]),
                               outputs=inferred.outputs)
    with tempfile.TemporaryDirectory() as tmp:
        code = serving_code(Path(tmp))
        return mlflow.pyfunc.log_model(
            name="model", python_model=LeadScorerEnsemble(), artifacts={"bundle": str(bundle)},
            code_paths=[str(code)], signature=signature, input_example=example,
            pip_requirements=pip_requirements(), registered_model_name=registered_name)


def set_alias(model_name: str, version: str | int, alias: str, tags: dict[str, str] | None = None) -> None:
    """Point `alias` at a version (moving it if it was elsewhere) and record tags on that version."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_registered_model_alias(model_name, alias, str(version))
    for key, value in (tags or {}).items():
        client.set_model_version_tag(model_name, str(version), key, str(value))
