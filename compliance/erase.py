"""`leadscore privacy erase`: remove leads from every store the product writes, and sign a receipt that proves it.

Order: count what each store holds (before); put the leads on the erasure list (committed first, so stream
workers and ingest refuse their old events and rows from then on); delete or pseudonymise every lead-keyed table
in one transaction; delete the online hashes, tombstone the workers' table state, rewrite MLflow row artifacts;
count again with fresh connections (after, expected zero); sign the receipt (HMAC, `erasure_receipt` key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

RECEIPT_KEY = "erasure_receipt"
LEAD_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


class PrivacyError(ValueError):
    """A request that cannot be carried out as given; the message names the field and the reason."""


def check_ids(lead_ids: Sequence[str]) -> list[str]:
    """The distinct, well-formed lead ids, in order; PrivacyError naming the first bad one."""
    out = []
    for i, lead in enumerate(lead_ids):
        if not isinstance(lead, str) or not LEAD_ID.match(lead) or lead != lead.strip():
            raise PrivacyError(f"lead_ids[{i}]: {lead!r} is not a lead id (1-200 characters, no control "
                               "characters or surrounding spaces)")
        out.append(lead)
    if not out:
        raise PrivacyError("lead_ids: give at least one lead id")
    return list(dict.fromkeys(out))


def canonical(receipt: dict) -> bytes:
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(settings: Settings, receipt: dict) -> str:
    return hmac.new(settings.secret(RECEIPT_KEY, create=True).encode(), canonical(receipt),
                    hashlib.sha256).hexdigest()


def verify_receipt(settings: Settings, receipt: dict, signature: str) -> bool:
    """True if `signature` is this installation's signature of `receipt` (offline: only the key is read)."""
    return hmac.compare_digest(sign(settings, receipt), signature)


@dataclass
class Erasure:
    """A finished erasure: its receipt (signed) and how long it took."""

    receipt: dict
    signature: str
    seconds: float

    @property
    def complete(self) -> bool:
        return bool(self.receipt["complete"])


def _versions(settings: Settings, runs: list[tuple[str, str, int]]) -> list[dict]:
    """The registered versions of the runs that learned from the leads."""
    from mlflow import MlflowClient

    client, out = MlflowClient(settings.tracking_uri), []
    for model_name, run_id, leads in runs:
        try:
            found = client.search_model_versions(f"run_id = '{run_id}'")
        except Exception:  # noqa: BLE001 - the registry unreachable: say the run, not a version
            found = []
        versions = [v.version for v in found if v.name == model_name] or [None]
        out += [{"model": model_name, "version": v, "run_id": run_id, "leads": leads} for v in versions]
    return out


def _raw_events(settings: Settings, at: datetime) -> dict:
    from pipelines.streams.records import SOURCE_TOPICS
    from pipelines.streams.topics import topic_retention_ms

    configured = settings.privacy().topic_retention_days * 86_400_000
    try:
        reported = topic_retention_ms(settings)
    except Exception:  # noqa: BLE001 - the broker down: state what the topics were created with
        reported = {}
    retention = max([v for v in reported.values() if v and v > 0] or [configured])
    return {"topics": list(SOURCE_TOPICS), "retention_ms": retention,
            "retention_from": "broker" if any(reported.values()) else "configured",
            "remain_until": (at + timedelta(milliseconds=retention)).isoformat(),
            "replays_refused": "the erasure list stops stream workers and ingest from bringing the lead back"}


def erase(settings: Settings, lead_ids: Sequence[str], requested_by: str, channel: str = "cli",
          request_id: str | None = None, say: Callable[[str], None] = lambda _: None) -> Erasure:
    """Erase `lead_ids` everywhere; return the signed receipt (also stored in compliance.erasure_receipts)."""
    import psycopg

    from compliance.stores import KafkaChangelogs, MlflowRowArtifacts, PostgresTables, RedisOnline
    from compliance.tokens import Tokenizer

    started = time.monotonic()
    ids = check_ids(lead_ids)
    tokens = Tokenizer(settings).many(ids)
    request_id = request_id or f"er_{secrets.token_hex(8)}"
    postgres, redis_store, kafka = PostgresTables(settings), RedisOnline(settings), KafkaChangelogs(settings)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        runs = conn.execute("SELECT model_name, run_id, count(*) FROM compliance.lineage WHERE lead_token = ANY(%s) "
                            "GROUP BY 1, 2 ORDER BY 1, 2", (tokens,)).fetchall()
    run_ids = [r[1] for r in runs]
    mlflow_store = MlflowRowArtifacts(settings, run_ids) if run_ids else None
    say(f"counting what {len(ids)} lead(s) have in every store")
    before = {**postgres.count(ids), redis_store.name: redis_store.count(ids), kafka.name: kafka.count(ids)}
    if mlflow_store:
        before[mlflow_store.name] = mlflow_store.count(ids)
    at = datetime.now(UTC)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:  # first and alone: replays are refused from now on
        conn.execute("INSERT INTO compliance.erasure_list (lead_token, erased_at, request_id) SELECT t, %s, %s "
                     "FROM unnest(%s::text[]) t ON CONFLICT (lead_token) DO UPDATE SET erased_at = EXCLUDED.erased_at, "
                     "request_id = EXCLUDED.request_id", (at, request_id, tokens))
    say("erasing")
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        actions = postgres.erase(conn, ids, tokens)
        # touched again with the deletion: stream workers reload consent once the lead's rows are gone
        conn.execute("UPDATE compliance.erasure_list SET erased_at = clock_timestamp() WHERE lead_token = ANY(%s)",
                     (tokens,))
    actions[redis_store.name] = f"deleted {redis_store.erase(ids)} key(s)"
    actions[kafka.name] = f"tombstoned ({kafka.erase(ids)} record(s))"
    if mlflow_store:
        actions[mlflow_store.name] = f"rewrote {mlflow_store.erase(ids)} artifact(s)"
    say("probing every store again")
    after = {**PostgresTables(settings).count(ids), redis_store.name: RedisOnline(settings).count(ids),
             kafka.name: KafkaChangelogs(settings).count(ids)}
    if mlflow_store:
        after[mlflow_store.name] = mlflow_store.count(ids)  # downloaded again
    redis_store.close()
    stores = [{"store": name, "before": before.get(name, 0), "after": after.get(name, 0),
               "action": actions.get(name, "nothing held")} for name in sorted(set(before) | set(after))]
    receipt = {
        "request_id": request_id, "erased_at": at.isoformat(), "requested_by": requested_by, "channel": channel,
        "leads": len(ids), "lead_tokens": tokens, "stores": stores,
        "held_anything": any(s["before"] for s in stores),
        "complete": all(s["after"] == 0 for s in stores),
        "kept": {"postgres:serving.prediction_log": "pseudonymised (token, no features) until its retention",
                 "postgres:compliance.audit_log": "pseudonymised (token) until its retention",
                 "postgres:compliance.consent_ledger": "token only: proof of consent (DPDP s.6(10))",
                 "postgres:compliance.requests": "token only: proof the request was answered"},
        "raw_events": _raw_events(settings, at),
        "model_versions": _versions(settings, runs) if runs else [],
    }
    signature = sign(settings, receipt)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        conn.execute("INSERT INTO compliance.erasure_receipts (request_id, leads, receipt, signature) VALUES "
                     "(%s, %s, %s, %s)", (request_id, len(ids), json.dumps(receipt), signature))
        conn.execute("INSERT INTO compliance.audit_log (actor, action, detail) VALUES (%s, 'erase', %s)",
                     (requested_by, json.dumps({"request_id": request_id, "leads": len(ids), "channel": channel,
                                                "complete": receipt["complete"]})))
        conn.execute("UPDATE compliance.requests SET status = 'done', closed_at = now(), detail = detail || %s "
                     "WHERE kind = 'erasure' AND status IN ('open', 'queued') AND lead_token = ANY(%s)",
                     (json.dumps({"receipt": request_id}), tokens))
    return Erasure(receipt, signature, time.monotonic() - started)


def load_receipt(settings: Settings, request_id: str) -> tuple[dict, str]:
    """(receipt, signature) of a stored erasure."""
    import psycopg

    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        row = conn.execute("SELECT receipt, signature FROM compliance.erasure_receipts WHERE request_id = %s",
                           (request_id,)).fetchone()
    if row is None:
        raise PrivacyError(f"request_id: no erasure receipt {request_id!r} (list them: leadscore privacy receipts)")
    return row[0], row[1]
