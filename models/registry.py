"""Reading the model registry's aliases, telling a missing alias from a registry that cannot be reached."""

from __future__ import annotations

from typing import Any


class RegistryUnavailable(RuntimeError):
    """The MLflow server did not answer (down, restarting, or refusing our login)."""


NOT_THERE = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def unavailable(exc: Exception, uri: str | None = None) -> RegistryUnavailable:
    """One readable line for a registry request that failed for a reason other than a missing object."""
    import mlflow

    where = uri or mlflow.get_tracking_uri()
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return RegistryUnavailable(f"the MLflow registry at {where} did not answer ({first}): check it with "
                               "`leadscore infra status`, start it with `leadscore infra up`, then run this again")


def is_unreachable(exc: BaseException) -> bool:
    """True for a request the registry never answered (connection refused, timed out, retries exhausted)."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return True
    return isinstance(exc, MlflowException) and "failed with exception" in str(exc)


def alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The ModelVersion `name@alias` points to; None if the model or the alias does not exist; RegistryUnavailable
    if the registry could not be asked (never "no such alias" for a server that is down)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if getattr(exc, "error_code", None) in NOT_THERE:
            return None
        raise unavailable(exc) from None
