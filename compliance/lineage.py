"""Lineage: which leads each model version (its training run) learned from, by token; and the erasure debt.

The erasure debt of a version is the number of erased leads it learned from: what the monitor exports as a gauge
(its alert and the retraining policy read it) and what `privacy erase` names per version.
"""

from __future__ import annotations

from collections.abc import Iterable

from infra.config import Settings


def record_lineage(settings: Settings, model_name: str, run_id: str, lead_ids: Iterable[str]) -> int:
    """Record the distinct leads of a training run; return how many."""
    import psycopg

    from compliance.tokens import Tokenizer

    tokens = sorted(set(Tokenizer(settings).many(dict.fromkeys(str(v) for v in lead_ids))))
    sql = "COPY compliance.lineage (model_name, run_id, lead_token) FROM STDIN"
    with psycopg.connect(settings.pg_dsn(role="train")) as conn, conn.cursor().copy(sql) as copy:
        for token in tokens:
            copy.write_row((model_name, run_id, token))
    return len(tokens)


def erasure_debt(settings: Settings, run_ids: Iterable[str]) -> dict[str, int]:
    """run id -> erased leads it learned from."""
    import psycopg

    runs = list(run_ids)
    with psycopg.connect(settings.pg_dsn(role="privacy")) as conn:  # its own login (0021) reads both tables
        found = dict(conn.execute(
            "SELECT l.run_id, count(*) FROM compliance.lineage l JOIN compliance.erasure_list e USING (lead_token) "
            "WHERE l.run_id = ANY(%s) GROUP BY 1", (runs,)).fetchall())
    return {run: int(found.get(run, 0)) for run in runs}
