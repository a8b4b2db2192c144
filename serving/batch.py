"""`leadscore score-batch`: every consenting lead the online store holds, scored in bulk by the champion and written
to `serving.batch_scores` (migration 0024), a table a CRM reads: one run id, one row per lead.

The scores are the online service's: the same registered version, the same feature rows read from Redis by the
same reader, the same scoring code (explanations left out). Leads without granted, unexpired scoring consent and
minors without parental consent are not scored, as /score refuses them; leads the online store does not hold are
counted, not scored. The job logs in as the scoring path does (`leadscore_serving`, its read-only Redis user).

One process by default; with `--ray [ADDRESS]` the scoring runs on Ray Data: the leads as a dataset of ids,
`map_batches` with a class that loads the model and opens the online reader once per worker (an actor pool of
`--workers`), the results gathered by this process, which writes them (infra/ray_local.py starts a local cluster
when no address is given).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from infra.config import ConfigError, Settings

ROLE = "serving"  # the scoring path's login (migrations 0014, 0024): reads consent, appends batch scores
PASSED_ENV = ("LEADSCORE_", "MLFLOW_", "KAFKA_")  # what a Ray worker needs to reach the same stack


@dataclass
class BatchResult:
    run_id: str
    model_name: str
    model_version: str
    engine: str
    leads: int  # consenting leads asked about
    scored: int
    not_online: int  # consenting leads the online store does not hold
    seconds: float
    score_seconds: float  # reading features and scoring only (the part Ray spreads)


def consenting_leads(settings: Settings, tenant: str | None = None) -> list[str]:
    """Stored ids of the leads that /score would score (granted, unexpired scoring consent; no unprotected minor),
    of one tenant or all."""
    import psycopg

    from compliance.children import unprotected_minor
    from serving.db import Db

    query = ("SELECT c.lead_id FROM compliance.consent c WHERE c.purpose = 'scoring' AND c.granted AND (c.expires_at "
             "IS NULL OR c.expires_at > now()) AND NOT " + unprotected_minor("c.lead_id") + " ORDER BY 1")
    rows: list[tuple[str]] = []
    with psycopg.connect(settings.pg_dsn(role=ROLE), autocommit=True) as conn:
        # one tenant at a time: the serving login reads a tenant's rows only where the transaction names it (0025)
        tenants = [tenant] if tenant else [r[0] for r in conn.execute("SELECT serving.scoring_tenants()")]
        for name in tenants:
            with Db.tenant(conn, name):
                rows += conn.execute(query).fetchall()
    return [r[0] for r in rows]


class ChunkScorer:
    """Scores chunks of lead ids: loads the version and opens the online reader once (per Ray worker)."""

    def __init__(self, env: dict[str, str], model_name: str, version: str) -> None:
        from pipelines.feature_store import feature_store
        from serving.features import OnlineFeatures
        from serving.model import load_version

        os.environ.update(env)
        settings = Settings.load(env)
        self.model = load_version(model_name, version)
        self.online = OnlineFeatures(settings, feature_store(settings, role=ROLE), self.model.feature_service,
                                     timeout_s=10.0)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = [str(x) for x in batch["lead_id"]]
        rows, stored = self.online.read(ids)
        held = [i for i, s in enumerate(stored) if s]
        scores = np.full(len(ids), np.nan)
        tiers = np.array([""] * len(ids), dtype=object)
        if held:
            results = self.model.score([rows[i] for i in held], explain=False)
            scores[held] = [r["score"] for r in results]
            tiers[held] = [r["tier"] for r in results]
        return {"lead_id": np.array(ids, dtype=object), "score": scores, "tier": tiers}


def _chunks(ids: list[str], size: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(ids), size):
        yield {"lead_id": np.array(ids[start:start + size], dtype=object)}


def score_local(env: dict[str, str], model_name: str, version: str, ids: list[str], batch_rows: int,
                progress: Callable[[int], None] = lambda _: None) -> pd.DataFrame:
    scorer = ChunkScorer(env, model_name, version)
    parts = []
    for chunk in _chunks(ids, batch_rows):
        parts.append(pd.DataFrame(scorer(chunk)))
        progress(len(chunk["lead_id"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["lead_id", "score", "tier"])


def score_ray(env: dict[str, str], model_name: str, version: str, ids: list[str], batch_rows: int,
              workers: int) -> pd.DataFrame:
    """Ray Data: ids -> map_batches(ChunkScorer) on an actor pool of `workers`, one CPU each."""
    import pyarrow as pa
    import ray

    class BoundScorer(ChunkScorer):  # its arguments travel with the class (not as object-store references)
        def __init__(self) -> None:
            super().__init__(env, model_name, version)

    step = max(1, -(-len(ids) // (workers * 4)))  # a few blocks per worker
    ds = ray.data.from_arrow([pa.table({"lead_id": ids[i:i + step]}) for i in range(0, len(ids), step)])
    out = ds.map_batches(BoundScorer, batch_size=batch_rows, batch_format="numpy",
                         compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
    return out.to_pandas()


def write_scores(settings: Settings, run_id: str, model_name: str, version: str, frame: pd.DataFrame) -> int:
    """Append the run's scored leads to serving.batch_scores (through a temp table: row-level security refuses
    COPY to the serving role)."""
    import psycopg

    from compliance.tenants import split_id

    names = "run_id, scored_at, tenant, lead_id, model_name, model_version, score, tier"
    at = pd.Timestamp.now(tz="UTC").to_pydatetime()
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE batch_in ON COMMIT DROP AS SELECT {names} FROM serving.batch_scores "
                    "WITH NO DATA")
        with cur.copy(f"COPY batch_in ({names}) FROM STDIN") as copy:
            for lead, score, tier in zip(frame["lead_id"], frame["score"], frame["tier"], strict=True):
                copy.write_row((run_id, at, split_id(lead)[0], lead, model_name, version, float(score), tier))
        cur.execute(f"INSERT INTO serving.batch_scores ({names}) SELECT {names} FROM batch_in")
    return len(frame)


def score_batch(settings: Settings, model_name: str | None = None, alias: str = "champion",
                tenant: str | None = None, ray_address: str | None = None, use_ray: bool = False, workers: int = 2,
                batch_rows: int = 5000, say: Callable[[str], None] = lambda _: None,
                progress: Callable[[int], None] = lambda _: None) -> BatchResult:
    """Score every consenting lead (of `tenant`, or all) with `model_name`@`alias`; write and return the run."""
    from serving.model import champion_version

    started = time.monotonic()
    if ray_address:  # said at once, before anything is loaded
        from infra.ray_local import check_address

        check_address(ray_address)
    os.environ.update(settings.mlflow_env("serving"))  # the registry's read-only user, as the service reads it
    model_name = model_name or settings.model_name
    version = champion_version(model_name, alias)
    if version is None:
        raise ConfigError(f"model {model_name!r} has no @{alias}: train and promote one first (leadscore train, "
                          "leadscore promote)")
    ids = consenting_leads(settings, tenant)
    say(f"{len(ids):,} consenting lead(s) to score with {model_name} version {version}")
    env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)} | {
        k: v for k, v in settings.env.items() if k.startswith(PASSED_ENV)}
    t0 = time.monotonic()
    if use_ray or ray_address:
        from infra.ray_local import ray_session

        with ray_session(settings, ray_address, workers):
            t0 = time.monotonic()
            frame = score_ray(env, model_name, version, ids, batch_rows, workers) if ids else None
        engine = f"ray ({ray_address or 'local'}, {workers} workers)"
    else:
        frame = score_local(env, model_name, version, ids, batch_rows, progress) if ids else None
        engine = "one process"
    score_seconds = time.monotonic() - t0
    frame = frame if frame is not None else pd.DataFrame({"lead_id": [], "score": [], "tier": []})
    held = frame[frame["score"].notna()]
    run_id = f"bs_{secrets.token_hex(6)}"
    write_scores(settings, run_id, model_name, version, held)
    return BatchResult(run_id, model_name, version, engine, len(ids), len(held), len(ids) - len(held),
                       time.monotonic() - started, score_seconds)
