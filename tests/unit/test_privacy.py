"""The privacy package's pure parts: tokens, the ledger's chain, notices, receipts, id checks, the stream's refusal
of an erased lead's old events and ingest's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from compliance import notices
from compliance.erase import PrivacyError, check_ids, sign, verify_receipt
from compliance.guard import IngestGuard
from compliance.ledger import GENESIS, canonical, entry_hash
from compliance.tokens import Tokenizer
from infra.config import Settings

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "state")})


def test_tokens_are_stable_per_key_and_differ_across_installations(settings: Settings, tmp_path: Path) -> None:
    tok = Tokenizer(settings)
    assert tok("L-1") == tok("L-1") == tok.many(["L-1"])[0] and len(tok("L-1")) == 32
    assert tok("L-1") != tok("L-2")
    other = Tokenizer(Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "other")}))
    assert other("L-1") != tok("L-1")  # a token says nothing without this installation's key
    key = settings.secrets_dir / "privacy_token.password"
    assert key.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("key", [b"", b"k", b"x" * 64, b"y" * 65, b"z" * 200])
def test_the_fast_hmac_is_rfc_2104_hmac_sha256(key: bytes) -> None:
    import hashlib
    import hmac

    from compliance.tokens import hmac_sha256_hex

    values = ["a", "", "ünïcode", "L-1" * 50]
    assert hmac_sha256_hex(key, values) == [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in values]
    assert hmac_sha256_hex(key, values, 32) == [h[:32] for h in hmac_sha256_hex(key, values)]


def test_the_chain_changes_when_any_field_seq_or_predecessor_changes() -> None:
    args = (1, NOW, "t" * 32, "scoring", True, "lead-processing@1", "cli", "operator")
    first = entry_hash(GENESIS, canonical(*args))
    assert first == entry_hash(GENESIS, canonical(*args))  # deterministic
    assert canonical(*args) == canonical(1, NOW.astimezone(timezone_ist()), *args[2:])  # the same instant
    for i, changed in enumerate([2, NOW + timedelta(microseconds=1), "u" * 32, "text_analysis", False,
                                 "lead-processing@2", "api", "someone"]):
        edited = list(args)
        edited[i] = changed
        assert entry_hash(GENESIS, canonical(*edited)) != first, f"field {i} is not covered by the hash"
    assert entry_hash("1" * 64, canonical(*args)) != first  # the predecessor is covered too


def test_the_bulk_entries_are_the_chain_canonical_defines() -> None:
    """The ledger's fast COPY lines hash exactly the bodies `canonical` gives (what verify recomputes), escapes and
    odd tokens included."""
    from compliance.ledger import Change, _entries

    changes = [Change("L-1", "scoring", True, "lead-processing@1", "crm_export", "ingest:x"),
               Change("acme/L\t2\\", "text_analysis", False, 'n"ote', "api", "ünïcode\nby"),
               Change("L-3", "scoring", False, "lead-processing@1", "crm_export", "ingest:x")]
    tokens = ["a" * 32, "tok with \"quote", "b" * 32]
    lines, seq, prev = _entries(changes, tokens, 7, "1" * 64, NOW)
    expect = "1" * 64
    rows = lines.split("\n")[:-1]
    assert len(rows) == 3 and seq == 10
    for i, (change, token, row) in enumerate(zip(changes, tokens, rows, strict=True)):
        body = canonical(8 + i, NOW, token, change.purpose, change.granted, change.notice_version, change.channel,
                         change.recorded_by)
        fields = row.split("\t")
        assert len(fields) == 11 and fields[0] == str(8 + i) and fields[9] == expect
        expect = entry_hash(expect, body)
        assert fields[10] == expect
    assert prev == expect
    assert "acme/L\\t2\\\\" in rows[1] and "ünïcode\\nby" in rows[1]  # COPY text escapes


def timezone_ist():  # noqa: ANN201
    from datetime import timezone

    return timezone(timedelta(hours=5, minutes=30))


def test_the_shipped_notice_is_complete_in_english_and_hindi() -> None:
    versions = notices.load()
    current = notices.current()
    assert current in versions and set(versions[current].languages) >= {"en", "hi"}
    hindi = notices.render(current, "hi")
    assert "सहमति" in hindi and "scoring" in hindi  # purposes named, text in Devanagari
    notices.check(current, "text_analysis")
    with pytest.raises(notices.NoticeError, match="unknown notice version"):
        notices.check("lead-processing@99", "scoring")
    with pytest.raises(notices.NoticeError, match="no 'ta' text"):
        notices.render(current, "ta")


def test_a_notice_missing_a_language_or_a_purpose_text_is_refused(tmp_path: Path) -> None:
    import yaml

    shipped = yaml.safe_load((notices.NOTICES_DIR / "lead-processing.yaml").read_text(encoding="utf-8"))
    only_en = json.loads(json.dumps(shipped, default=str))
    del only_en["versions"][0]["languages"]["hi"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(only_en, allow_unicode=True), encoding="utf-8")
    with pytest.raises(notices.NoticeError, match="Eighth-Schedule"):
        notices.load(tmp_path)
    gap = json.loads(json.dumps(shipped, default=str))
    del gap["versions"][0]["languages"]["hi"]["purposes"]["text_analysis"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(gap, allow_unicode=True), encoding="utf-8")
    with pytest.raises(notices.NoticeError, match="'hi' describes purposes"):
        notices.load(tmp_path)


def test_a_receipt_verifies_and_any_change_breaks_it(settings: Settings, tmp_path: Path) -> None:
    receipt = {"request_id": "er_1", "leads": 1, "stores": [{"store": "redis:online", "before": 1, "after": 0}],
               "complete": True}
    signature = sign(settings, receipt)
    assert verify_receipt(settings, json.loads(json.dumps(receipt)), signature)  # survives a JSON round trip
    tampered = json.loads(json.dumps(receipt))
    tampered["stores"][0]["after"] = 1
    assert not verify_receipt(settings, tampered, signature)
    other = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "elsewhere")})
    assert not verify_receipt(other, receipt, signature)  # another installation's key


@pytest.mark.parametrize(("ids", "says"), [
    ([], "at least one"), ([""], r"lead_ids\[0\]"), (["ok", "bad\x00id"], r"lead_ids\[1\]"),
    ([" padded"], "surrounding spaces"), (["x" * 201], "1-200 characters"), ([7], r"lead_ids\[0\]"),
])
def test_bad_lead_ids_are_named(ids: list, says: str) -> None:
    with pytest.raises(PrivacyError, match=says):
        check_ids(ids)


def test_ids_are_deduplicated_in_order() -> None:
    assert check_ids(["b", "a", "b"]) == ["b", "a"]


def test_ingest_drops_only_rows_dated_before_the_leads_erasure(settings: Settings) -> None:
    tok = Tokenizer(settings)
    guard = IngestGuard.__new__(IngestGuard)
    guard.token, guard.erased = tok, {tok("gone"): NOW}
    feats = pd.DataFrame({"lead_id": ["gone", "gone", "kept"],
                          "event_timestamp": [NOW - timedelta(days=1), NOW + timedelta(days=1), NOW]})
    kept, dropped = guard.drop_erased(feats)
    assert dropped == 1 and kept["lead_id"].tolist() == ["gone", "kept"]  # a row after a new consent may come back
    rejects = pd.DataFrame({"lead_id": ["gone", None, "kept"], "reason": ["x", "y", "z"]})
    assert guard.drop_erased_rejects(rejects)["reason"].tolist() == ["y", "z"]


def test_the_stream_refuses_an_erased_leads_old_events_and_drops_its_state(settings: Settings) -> None:
    pytest.importorskip("faust")
    from pipelines.streams.fold import fold
    from pipelines.streams.records import TOPIC_WEB, WebEvent

    tok = Tokenizer(settings)

    def message(lead: str, at: datetime, offset: int) -> SimpleNamespace:
        event = WebEvent(event_id=f"e{offset}", lead_id=lead, event_time=at, action="listing_view")
        return SimpleNamespace(topic=TOPIC_WEB, key=lead.encode(), value=event.dumps(), partition=0, offset=offset)

    consent = SimpleNamespace(known={"kept", "back"}, erased={tok("gone"): NOW.timestamp(),
                                                              tok("back"): (NOW - timedelta(hours=2)).timestamp()},
                              token=tok, prune=True)
    table = {b"gone": {"stale": True}, b"kept": None}
    out = fold([message("gone", NOW - timedelta(minutes=5), 1), message("kept", NOW - timedelta(minutes=5), 2),
                message("back", NOW - timedelta(hours=3), 3), message("back", NOW - timedelta(minutes=1), 4)],
               consent, table, NOW)
    assert out.erased == 2 and not out.dead  # refused, not dead-lettered (that would copy the payload)
    assert set(out.batch.rows) == {"kept", "back"}  # re-consented after its erasure: new events count
    assert b"gone" not in table and not consent.prune  # its state left the table


def _spec(features: str):  # noqa: ANN202 - DatasetSpec
    import yaml

    from pipelines.spec import DatasetSpec

    return DatasetSpec.model_validate(yaml.safe_load(f"""
name: kids
description: t
owner: t
entity: {{column: id}}
event_timestamp: {{column: at}}
consent: {{scoring: {{default: true, source: t}}}}
features:
{features}
"""))


def test_a_spec_marks_one_age_or_birth_date_feature_of_the_right_type() -> None:
    from pydantic import ValidationError

    assert _spec("  - {column: a, name: age, type: int, personal: age}").features[0].personal == "age"
    _spec("  - {column: b, name: born, type: date, personal: date_of_birth}")
    for bad, says in (("  - {column: a, name: age, type: string, personal: age}", "int or float"),
                      ("  - {column: b, name: born, type: int, personal: date_of_birth}", "date features"),
                      ("  - {column: a, name: age, type: int, personal: age}\n"
                       "  - {column: b, name: born, type: date, personal: date_of_birth}", "all marked")):
        with pytest.raises(ValidationError, match=says):
            _spec(bad)


def test_who_is_a_child_and_until_when() -> None:
    from compliance.children import adult_from

    at = pd.Timestamp("2026-06-01", tz="UTC")
    by_age = adult_from(_spec("  - {column: a, name: age, type: int, personal: age}"),
                        pd.DataFrame({"lead_id": ["k", "a", "n"], "event_timestamp": [at] * 3, "age": [16, 30, None]}))
    assert abs((by_age[0] - (at + pd.Timedelta(days=2 * 365.25))).total_seconds()) < 1
    assert by_age[1] == at and pd.isna(by_age[2])  # an adult: of age from the row's time; unknown: no verdict
    born = pd.Series(pd.to_datetime(["2010-03-04", "1990-01-01"], utc=True))
    by_birth = adult_from(_spec("  - {column: b, name: born, type: date, personal: date_of_birth}"),
                          pd.DataFrame({"lead_id": ["k", "a"], "event_timestamp": [at] * 2, "born": born}))
    assert list(by_birth) == list(pd.to_datetime(["2028-03-04", "2008-01-01"], utc=True))
    assert adult_from(_spec("  - {column: c, name: city, type: string}"), pd.DataFrame({"city": ["x"]})) is None


def test_the_stream_does_not_track_a_child_without_parental_consent(settings: Settings) -> None:
    pytest.importorskip("faust")
    from pipelines.streams.fold import fold
    from pipelines.streams.records import TOPIC_WEB, WebEvent

    def message(lead: str, offset: int) -> SimpleNamespace:
        event = WebEvent(event_id=f"e{offset}", lead_id=lead, event_time=NOW - timedelta(minutes=1),
                         action="listing_view")
        return SimpleNamespace(topic=TOPIC_WEB, key=lead.encode(), value=event.dumps(), partition=0, offset=offset)

    consent = SimpleNamespace(known={"kid", "adult"}, erased={}, token=Tokenizer(settings), prune=False,
                              minors={"kid"})
    out = fold([message("kid", 1), message("adult", 2)], consent, {}, NOW)
    assert out.minors == 1 and set(out.batch.rows) == {"adult"} and not out.dead
