"""Ray for LeadScore's jobs: a local cluster of this process's own, or an existing cluster by address, with Ray's
usage stats and cloud probes off (../shared/docs/ENVIRONMENT.md) so nothing leaves the machine.

A local cluster gets a short temporary folder of its own (removed at shutdown), binds 127.0.0.1 and runs no
dashboard. For a cluster, only the address changes (`ray://host:10001` or `host:6379`); its nodes must reach the
same PostgreSQL, Redis and MLflow (docs/scale.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.config import ConfigError, Settings

QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
         "RAY_DISABLE_DOCKER_CPU_WARNING": "1"}


def quiet_env(settings: Settings) -> dict[str, str]:
    """The variables that keep Ray from reaching outside addresses: usage stats off, and a HOME holding
    `ray_bootstrap_config.yaml` (a local provider) so it does not probe cloud metadata."""
    home = settings.state_dir / "ray"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = home / "ray_bootstrap_config.yaml"
    if not config.is_file():
        config.write_text("provider: {type: local}\n")
    # token authentication (Ray's default), its token kept in that HOME; a cluster's own mode is taken if set
    return {**QUIET, "HOME": str(home), "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """ConfigError naming `address` unless its host:port takes a TCP connection (Ray itself retries for minutes)."""
    import socket

    target = address.split("://", 1)[-1]
    if target in ("auto", "local"):
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return
    except ValueError:
        raise ConfigError(f"--ray-address {address}: give HOST:PORT (or ray://HOST:PORT)") from None
    except OSError as exc:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                          "with `ray start --head`, or use --ray alone for a local one") from None


@contextmanager
def ray_session(settings: Settings, address: str | None, workers: int) -> Iterator[None]:
    """`ray.init` on `address` (an existing cluster) or on a local cluster of `workers` CPUs; shut down after."""
    os.environ.update(quiet_env(settings))
    import ray

    temp: Path | None = None
    try:
        if address:
            check_address(address)
            try:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            except Exception as exc:  # ConnectionError, TimeoutError, ValueError: all mean the same to the user
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({first}); start one with "
                                  "`ray start --head`, or use --ray alone for a local one") from None
        else:
            temp = Path(tempfile.mkdtemp(prefix="lsray-"))  # short: Ray's socket paths must stay under 107 bytes
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
                     _temp_dir=str(temp), _node_ip_address="127.0.0.1")
        import logging

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the command prints its own summary
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.WARNING)
        yield
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
