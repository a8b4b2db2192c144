"""How serving calls the boosters: thread counts by batch size, and a small pool for big leaf lookups.

Travels with the registered model (models/register.py SERVING_MODULES), as models/ensemble.py does.
"""

from __future__ import annotations

from models.preprocess import Encoded

SMALL_BATCH = 2000  # rows; below this the boosters predict on one thread
PARALLEL_ROWS = 256  # rows; from this many, serving's leaf lookups run on two threads
_POOL: list = []


def leaf_pool():  # noqa: ANN202 - concurrent.futures.ThreadPoolExecutor, made on first use
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(2, thread_name_prefix="leadscore-leaves"))
    return _POOL[0]


def lgb_threads(encoded: Encoded) -> dict:
    """One thread for small batches: LightGBM's thread pool costs milliseconds per call on a few rows."""
    return {"num_threads": 1} if len(encoded.trees) < SMALL_BATCH else {}


def xgb_threads(booster, rows: int):  # noqa: ANN001, ANN202 - xgboost.Booster
    """The booster set to one thread for small batches (all cores otherwise), as for LightGBM."""
    threads = 1 if rows < SMALL_BATCH else 0
    if getattr(booster, "_leadscore_threads", None) != threads:
        booster.set_param({"nthread": threads})
        booster._leadscore_threads = threads
    return booster
