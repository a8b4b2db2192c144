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

SERVING_MODULES = ("__init__.py", "boosters.py", "ensemble.py", "forest.py", "linear.py", "paths.py",
                   "preprocess.py", "tabular_net.py")
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


def _is_bool(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col):
        return True
    values = col.dropna()
    return col.dtype == object and len(values) > 0 and values.map(lambda v: isinstance(v, bool)).all()


def input_example(frame: pd.DataFrame, schema) -> pd.DataFrame:  # noqa: ANN001 - models.preprocess.FeatureSchema
    """Two made-up leads, not real ones: every feature at its training median (numbers), its most frequent level
    (categories), True (yes/no) or the date its median days before today, then every feature missing. No lead's row
    is stored with the model."""
    typical, empty = {}, {}
    today = pd.Timestamp.now(tz="UTC").normalize()
    for name in schema.features:
        if name in schema.dates:
            typical[name], empty[name] = (today - pd.Timedelta(days=round(schema.medians[name]))).isoformat(), None
        elif name in schema.categorical:
            typical[name], empty[name] = schema.categories[name][0], None
        elif _is_bool(frame[name]):
            typical[name], empty[name] = True, None
        else:
            typical[name], empty[name] = float(schema.medians[name]), float("nan")
    example = pd.DataFrame([typical, empty], columns=schema.features)
    for name in schema.features:
        if name not in schema.categorical and name not in schema.dates and not _is_bool(frame[name]):
            example[name] = example[name].astype("float64")
        else:
            example[name] = example[name].astype(object)
    return example


def _column(name: str, categorical: list[str], boolean: set[str]):  # noqa: ANN202 - mlflow ColSpec
    """Every feature column must be present (values may be missing): text is string, yes/no boolean, and numbers
    any numeric type (an int feature arrives as int64 without gaps and as float64 with them: both are accepted);
    a date is a datetime or ISO 8601 text, so it is any type too."""
    from mlflow.types import ColSpec, DataType
    from mlflow.types.schema import AnyType

    if name in categorical:
        return ColSpec(DataType.string, name, required=True)
    if name in boolean:
        return ColSpec(DataType.boolean, name, required=True)
    return ColSpec(AnyType(), name, required=True)


def signature_of(bundle: Path, example: pd.DataFrame):  # noqa: ANN201 - mlflow ModelSignature
    """The model's signature, checked against the example the way MLflow checks a served input (fails fast)."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.models.utils import _enforce_schema
    from mlflow.types import Schema

    from models.ensemble import LeadScorerEnsemble

    loaded = LeadScorerEnsemble.from_bundle(bundle)
    boolean = {c for c in example.columns if c not in loaded.categorical_features and _is_bool(example[c])}
    inferred = infer_signature(example, loaded.score(example).reset_index(drop=True))
    signature = ModelSignature(inputs=Schema([_column(c, loaded.categorical_features, boolean)
                                              for c in loaded.feature_names]), outputs=inferred.outputs)
    _enforce_schema(example, signature.inputs)
    return signature


def log_ensemble(bundle: Path, example: pd.DataFrame, registered_name: str | None):  # noqa: ANN201 - ModelInfo
    """Log the pyfunc model in the active run (name "model") and, if a name is given, register a new version."""
    import mlflow

    from models.ensemble import LeadScorerEnsemble

    signature = signature_of(bundle, example)
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
