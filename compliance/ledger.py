"""The consent ledger: every consent change an append-only, hash-chained entry (DPDP Act s.6(10): prove consent).

entry_hash = sha256(prev_hash + canonical JSON of [seq, at, lead_token, purpose, granted, notice_version, channel,
recorded_by]); the first entry follows GENESIS. The chain's head (last seq and hash) is kept signed with the
`consent_ledger` key (secrets directory), so deleting the newest entries is detected as well as editing, deleting
or reordering any other. Entries name the lead by its token; lead_id beside it is cleared by an erasure, which
leaves the chain verifiable. Appends take a transaction-scoped advisory lock: one writer extends the chain at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

GENESIS = "0" * 64
LOCK = 0x1EAD5C0  # pg_advisory_xact_lock key of the ledger's writer
KEY = "consent_ledger"
COLUMNS = ["seq", "at", "lead_token", "lead_id", "purpose", "granted", "notice_version", "channel", "recorded_by",
           "prev_hash", "entry_hash"]


@dataclass(frozen=True)
class Change:
    """One consent decision to record."""

    lead_id: str
    purpose: str
    granted: bool
    notice_version: str
    channel: str
    recorded_by: str


def canonical(seq: int, at: datetime, token: str, purpose: str, granted: bool, notice: str, channel: str,
              recorded_by: str) -> str:
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
    return json.dumps([seq, stamp, token, purpose, granted, notice, channel, recorded_by], separators=(",", ":"),
                      ensure_ascii=False)


def entry_hash(prev: str, body: str) -> str:
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _copy_text(value: str) -> str:
    """A value in COPY's text format (backslash, tab, newline and carriage return escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                 .replace("\r", "\\r"))
    return value


def _entries(changes: Sequence[Change], tokens: Sequence[str], seq: int, prev: str, at: datetime
             ) -> tuple[str, int, str]:
    """COPY text lines of `changes` chained on from (seq, prev), and the new (seq, prev). The entry bodies are built
    from pre-encoded parts (the same text as `canonical`, which verify uses) where the values allow it."""
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
    at_text, sha = at.isoformat(), hashlib.sha256
    lines, fixed = [], {}
    for change, token in zip(changes, tokens, strict=True):
        seq += 1
        key = (change.purpose, change.notice_version, change.channel, change.recorded_by)
        if key not in fixed:  # the JSON and COPY forms of the fields shared by most changes, made once
            tail = json.dumps(list(key[1:]), separators=(",", ":"), ensure_ascii=False)[1:]
            fixed[key] = (json.dumps(key[0], ensure_ascii=False), tail,
                          "\t".join("\\N" if v is None else _copy_text(v) for v in key[1:]), _copy_text(key[0]))
        purpose_json, tail, copy_tail, copy_purpose = fixed[key]
        if token.isalnum() and token.isascii():  # a token as our Tokenizer makes it: no JSON escaping needed
            body = f'[{seq},"{stamp}","{token}",{purpose_json},{"true" if change.granted else "false"},{tail}'
        else:
            body = canonical(seq, at, token, change.purpose, change.granted, *key[1:])
        digest = sha((prev + body).encode()).hexdigest()
        lines.append(f"{seq}\t{at_text}\t{_copy_text(token)}\t{_copy_text(change.lead_id)}\t{copy_purpose}\t"
                     f"{'t' if change.granted else 'f'}\t{copy_tail}\t{prev}\t{digest}\n")
        prev = digest
    return "".join(lines), seq, prev


def _sign(key: str, seq: int, head: str) -> str:
    return hmac.new(key.encode(), f"{seq}:{head}".encode(), hashlib.sha256).hexdigest()


def append(conn, settings: Settings, changes: Sequence[Change], tokens: Sequence[str] | None = None) -> int:  # noqa: ANN001
    """Append `changes` to the chain inside the connection's transaction; return the last seq written."""
    if not changes:
        return 0
    from compliance.tokens import Tokenizer

    tokens = tokens if tokens is not None else Tokenizer(settings).many(c.lead_id for c in changes)
    key = settings.secret(KEY, create=True)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
        head = conn.execute("SELECT seq, entry_hash FROM compliance.consent_ledger ORDER BY seq DESC LIMIT 1"
                            ).fetchone()
        seq, prev = head or (0, GENESIS)
        at = datetime.now(UTC)
        # PostgreSQL refuses COPY into a table under row-level security for a role it applies to (the privacy
        # login): such a role copies into a temporary table and moves the rows with one INSERT ... SELECT
        direct = conn.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
                              ).fetchone()[0]
        target = "compliance.consent_ledger"
        if not direct:
            target = "pg_temp.ledger_rows"
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS ledger_rows ON COMMIT DELETE ROWS AS SELECT "
                         f"{', '.join(COLUMNS)} FROM compliance.consent_ledger WITH NO DATA")
            conn.execute("TRUNCATE pg_temp.ledger_rows")  # an earlier append of the same transaction
        with conn.cursor().copy(f"COPY {target} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for start in range(0, len(changes), 10_000):  # COPY text built per block: a write per row is slow
                lines, seq, prev = _entries(changes[start:start + 10_000], tokens[start:start + 10_000], seq, prev, at)
                copy.write(lines)
        if not direct:
            conn.execute(f"INSERT INTO compliance.consent_ledger ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
                         "FROM pg_temp.ledger_rows")
        conn.execute("INSERT INTO compliance.ledger_head (id, seq, entry_hash, signature) VALUES (true, %s, %s, %s) "
                     "ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, entry_hash = EXCLUDED.entry_hash, "
                     "signature = EXCLUDED.signature, updated_at = now()", (seq, prev, _sign(key, seq, prev)))
    return seq


@dataclass
class Verification:
    """What `verify` found: the chain's length and every problem (empty when intact)."""

    entries: int = 0
    problems: list[str] = field(default_factory=list)
    unbacked: int = 0  # current consent rows whose latest ledger entry is missing or says otherwise

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(settings: Settings, max_problems: int = 20) -> Verification:
    """Re-derive the whole chain from the table and check it against the signed head."""
    import psycopg

    from compliance.tokens import Tokenizer

    tok = Tokenizer(settings)
    key = settings.secret(KEY, create=True)
    out = Verification()

    def problem(text: str) -> None:
        if len(out.problems) < max_problems:
            out.problems.append(text)

    expected, prev = 1, GENESIS
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        with conn.cursor(name="ledger") as cur:
            cur.itersize = 20_000
            cur.execute(f"SELECT {', '.join(COLUMNS)} FROM compliance.consent_ledger ORDER BY seq")
            for seq, at, token, lead_id, purpose, granted, notice, channel, by, prev_hash, digest in cur:
                if seq != expected:
                    problem(f"entries {expected}..{seq - 1} are missing (deleted)" if seq > expected
                            else f"entry {seq} appears out of order")
                if prev_hash != prev:
                    problem(f"entry {seq} does not follow the entry before it (an entry was deleted, inserted or "
                            "reordered)")
                if entry_hash(prev_hash, canonical(seq, at, token, purpose, granted, notice, channel, by)) != digest:
                    problem(f"entry {seq} was edited: its content no longer gives its hash")
                if lead_id is not None and tok(lead_id) != token:
                    problem(f"entry {seq}: its lead_id was changed (it does not give the entry's token)")
                prev, expected = digest, seq + 1
                out.entries += 1
        head = conn.execute("SELECT seq, entry_hash, signature FROM compliance.ledger_head").fetchone()
        if head is None:
            if out.entries:
                problem("the ledger's signed head is missing")
        else:
            seq, digest, signature = head
            if not hmac.compare_digest(signature, _sign(key, seq, digest)):
                problem("the ledger's head signature does not verify (the head was edited)")
            elif (seq, digest) != (expected - 1, prev):
                problem(f"the signed head is entry {seq} but the chain ends at entry {expected - 1} "
                        "(the newest entries were deleted or the chain was rewritten)")
        out.unbacked = conn.execute(
            """SELECT count(*) FROM compliance.consent c LEFT JOIN LATERAL (
                   SELECT granted FROM compliance.consent_ledger l WHERE l.lead_id = c.lead_id
                   AND l.purpose = c.purpose ORDER BY seq DESC LIMIT 1) last ON true
               WHERE last.granted IS DISTINCT FROM c.granted""").fetchone()[0]
    return out
