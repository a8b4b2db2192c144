"""The broker-lead simulator: seeded, valid records, a plausible funnel, PII and consent by the spec (no servers)."""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from pipelines import simulate as sim
from pipelines import simulate_text as txt
from pipelines.spec import load_spec
from pipelines.streams.records import ALLOWED, CRM_STATUSES, RECORD_FOR_TOPIC, SOURCE_TOPICS
from pipelines.validate import check_chunk

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "feature_repo" / "datasets" / "broker_leads.yaml"
END = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAYS = 30
N = 3000
HINGLISH = re.compile(r"\b(kitna|kitne|hai|nahi|hoon|kya|chahiye|karke|mein|abhi|kab|batayein|hoga)\b", re.I)


def _raw(profiles: pd.DataFrame) -> pd.DataFrame:
    """The CSV as ingest reads it: every column a string, nothing turned into NaN."""
    buf = io.StringIO()
    profiles.to_csv(buf, index=False)
    return pd.read_csv(io.StringIO(buf.getvalue()), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def world():
    profiles, intent = sim.generate_profiles(N, 11, END - timedelta(days=DAYS), DAYS)
    events = sim.generate_events(profiles, intent, DAYS, 11, END)
    return profiles, intent, events, list(events)


def problem(topic: str, key: str, value: bytes, lead_ids: set[str], now: datetime) -> str | None:
    """Why the stream workers would dead-letter this event (mirrors pipelines.streams.app.parse), or None."""
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return "unparseable"
    data.pop("__faust", None)
    try:
        event = RECORD_FOR_TOPIC[topic].from_data(data)
    except TypeError:
        return "missing_field"
    for (t, name), allowed in ALLOWED.items():
        if t == topic and getattr(event, name) not in allowed:
            return "invalid_value"
    if event.event_time > now + timedelta(days=1):
        return "future_event_time"
    if event.lead_id not in lead_ids:
        return "unknown_lead"
    if key != event.lead_id:
        return "key_mismatch"
    return None


def test_same_seed_same_profiles_and_events():
    a, ia = sim.generate_profiles(300, 5, END - timedelta(days=10), 10)
    b, ib = sim.generate_profiles(300, 5, END - timedelta(days=10), 10)
    pd.testing.assert_frame_equal(a, b)
    assert np.array_equal(ia, ib)
    ea = list(sim.generate_events(a, ia, 10, 5, END))
    assert ea == list(sim.generate_events(b, ib, 10, 5, END))
    assert len(ea) > 300
    c, ic = sim.generate_profiles(300, 6, END - timedelta(days=10), 10)
    assert not c["full_name"].equals(a["full_name"])
    assert list(sim.generate_events(c, ic, 10, 6, END)) != ea


def test_profiles_are_plausible_and_hide_intent(world):
    profiles, intent, _, _ = world
    assert list(profiles.columns) == list(sim.PROFILE_COLUMNS)
    assert "intent" not in profiles.columns and len(intent) == N and intent.min() > 0 and intent.max() < 1
    assert profiles["lead_id"].is_unique and profiles["lead_id"].iloc[41] == "BL-00000042"
    assert profiles["phone"].str.fullmatch(r"\+91[6-9]\d{9}").all()
    assert profiles["email"].str.fullmatch(r"[a-z.]+\d*@[a-z.]+").all()
    assert set(profiles["age_band"]) == {"18-24", "25-34", "35-44", "45-54", "55+"}
    income = profiles["annual_income_inr"].astype(float)
    assert 700_000 <= income.median() <= 950_000
    by_tier = income.groupby(profiles["city_tier"]).median()
    assert by_tier["1"] > by_tier["2"] > by_tier["3"]
    by_emp = income.groupby(profiles["employment_type"]).median()
    assert by_emp["business"] > by_emp["salaried"] > by_emp["student"]
    missing = profiles["cibil_score"] == ""
    assert 0.03 < missing.mean() < 0.08
    assert (profiles.loc[missing, "cibil_band"] == "").all()
    score = profiles.loc[~missing, "cibil_score"].astype(int)
    assert score.between(300, 900).all() and score.between(650, 800).mean() > 0.6
    bands = pd.cut(score, [0, 549, 649, 699, 749, 900], labels=["poor", "fair", "good", "very_good", "excellent"])
    assert (bands.astype(str) == profiles.loc[~missing, "cibil_band"]).all()
    tiers = {city: str(tier) for city, (tier, _) in txt.CITIES.items()}
    assert (profiles["city"].map(tiers) == profiles["city_tier"]).all()
    assert {"Mumbai", "Jaipur", "Mysuru"} <= set(profiles["city"])
    for column, share in (("consent_scoring", 0.95), ("consent_marketing", 0.80), ("consent_text_analysis", 0.70)):
        assert abs((profiles[column] == "Yes").mean() - share) < 0.03, column
    created = pd.to_datetime(profiles["created_at"], utc=True)
    assert created.min() >= END - timedelta(days=DAYS) and created.max() <= END
    assert created.dt.day.nunique() > 20  # spread over the period


def test_every_event_is_a_valid_record_in_the_window(world):
    profiles, _, events, items = world
    ids = set(profiles["lead_id"])
    created = dict(zip(profiles["lead_id"], pd.to_datetime(profiles["created_at"], utc=True), strict=True))
    assert events.n_bad == 0 and len(items) == len(events)
    seen, last = set(), None
    for topic, key, value in items:
        record = RECORD_FOR_TOPIC[topic].loads(value)
        for (t, name), allowed in ALLOWED.items():
            if t == topic:
                assert getattr(record, name) in allowed, (topic, name, value)
        assert record.lead_id == key and key in ids
        assert END - timedelta(days=DAYS) <= record.event_time <= END
        assert record.event_time >= created[key]
        assert last is None or record.event_time >= last  # event-time order
        last = record.event_time
        assert record.event_id not in seen
        seen.add(record.event_id)
    assert set(events.counts()) == set(SOURCE_TOPICS) and all(events.counts().values())


def test_payload_fields_are_the_records_fields(world):
    _, _, _, items = world
    done = set()
    for topic, _, value in items:
        if topic in done:
            continue
        record = RECORD_FOR_TOPIC[topic].loads(value)
        # every field of the record, but `tenant`: the simulated leads are the default tenant's (no field)
        assert set(json.loads(value)) == set(json.loads(record.dumps())) - {"tenant"}, topic
        done.add(topic)
    assert done == set(SOURCE_TOPICS)


def test_crm_statuses_follow_the_funnel(world):
    _, _, events, items = world
    statuses = defaultdict(list)
    for topic, key, value in items:
        if topic == "lead.crm":
            statuses[key].append(json.loads(value)["status"])
    assert len(statuses) == N  # every lead starts as new
    rank = {s: i for i, s in enumerate(CRM_STATUSES)}
    for lead, seq in statuses.items():
        assert seq[0] == "new", lead
        terminal = [s for s in seq if s in ("converted", "lost")]
        assert len(terminal) <= 1 and (not terminal or seq[-1] == terminal[0]), (lead, seq)
        path = [s for s in seq if s != "lost"]
        assert [rank[s] for s in path] == list(range(len(path))), (lead, seq)  # no skipped or repeated stage
    final = Counter(seq[-1] if seq[-1] in ("converted", "lost") else "open" for seq in statuses.values())
    assert final == Counter(events.outcome.tolist())


def test_conversion_depends_on_intent_and_engagement(world):
    profiles, intent, events, items = world
    outcome = events.outcome
    rate = (outcome == "converted").mean()
    assert 0.08 <= rate <= 0.15, rate
    conv, rest = outcome == "converted", outcome != "converted"
    assert intent[conv].mean() > intent[rest].mean() + 0.15
    assert intent[conv].mean() > intent[outcome == "lost"].mean() + 0.15
    engaged = np.bincount(events.lead[events.topic != sim.CRM], minlength=N)
    assert engaged[conv].mean() > 1.3 * engaged[rest].mean()
    web = np.bincount(events.lead[events.topic == sim.WEB], minlength=N)
    assert np.corrcoef(intent, web)[0, 1] > 0.2
    # affordability matters too, but less than intent
    score = pd.to_numeric(profiles["cibil_score"], errors="coerce")
    assert (outcome[score >= 750] == "converted").mean() > (outcome[score < 650] == "converted").mean()
    # conversion comes after the lead's engagement
    order_ok = events.time_us <= np.where(outcome[events.lead] == "converted", events.outcome_us[events.lead],
                                          np.iinfo(np.int64).max)
    assert order_ok.all()


def test_messages_have_hinglish_and_carry_intent(world):
    _, intent, _, items = world
    inbound = [(key, json.loads(v)["text"]) for t, key, v in items
               if t == "lead.messages" and json.loads(v)["direction"] == "inbound"]
    texts = [text for _, text in inbound]
    assert texts and all(texts)
    assert sum(bool(HINGLISH.search(t)) for t in texts) > 0.1 * len(texts)
    assert any("lakh" in t or "crore" in t for t in texts)
    low = set(txt.INBOUND[("property", "low")]) | set(txt.INBOUND[("insurance", "low")])
    hot = re.compile(r"site visit|EMI|booking|documents|Token|payment link", re.I)
    k = {f"BL-{i + 1:08d}": x for i, x in enumerate(intent)}
    high_leads = [t for key, t in inbound if k[key] > 0.5]
    low_leads = [t for key, t in inbound if k[key] < 0.2]
    share_hot = [np.mean([bool(hot.search(t)) for t in ts]) for ts in (high_leads, low_leads)]
    share_cold = [np.mean([t in low or "bahut zyada" in t for t in ts]) for ts in (high_leads, low_leads)]
    assert share_hot[0] > share_hot[1] + 0.15 and share_cold[1] > share_cold[0] + 0.15
    notes = [json.loads(v)["notes"] for t, _, v in items if t == "lead.calls"]
    assert "Not reachable" in notes and any("site visit" in n for n in notes)


def test_high_intent_replies_faster(world):
    _, intent, _, items = world
    waiting, latency = {}, defaultdict(list)  # lead -> time of our last message; lead -> reply delays (s)
    for topic, key, value in items:
        if topic != "lead.messages":
            continue
        record = RECORD_FOR_TOPIC[topic].loads(value)
        if record.direction == "outbound":
            waiting[key] = record.event_time
        elif key in waiting:
            latency[key].append((record.event_time - waiting.pop(key)).total_seconds())
    k = {f"BL-{i + 1:08d}": x for i, x in enumerate(intent)}
    fast = np.median([d for lead, ds in latency.items() if k[lead] > 0.5 for d in ds])
    slow = np.median([d for lead, ds in latency.items() if k[lead] < 0.2 for d in ds])
    assert fast * 3 < slow, (fast, slow)  # minutes against hours


def test_csv_ingests_cleanly_by_the_spec_with_pii_dropped_or_hashed(world):
    profiles, _, _, _ = world
    spec = load_spec(SPEC)
    raw = _raw(profiles)
    assert {"full_name", "phone", "email"} <= set(raw.columns)
    assert set(raw.columns) <= spec.known_columns()
    assert {f.name for f in spec.features} == {c for c in sim.PROFILE_COLUMNS
                                               if c not in ("lead_id", "created_at", "full_name", "phone", "email")
                                               and not c.startswith("consent_")}
    pii = {p.column: p for p in spec.pii}
    assert pii["full_name"].action == "drop" and pii["email"].action == "drop"
    assert pii["phone"].action == "hash" and pii["phone"].as_feature is None
    phones = set(raw["phone"])
    checked = check_chunk(raw, spec, 1, b"k" * 32)
    assert checked.rejects.empty, checked.rejects["reason"].head().tolist()
    assert len(checked.features) == N
    cols = set(checked.features.columns)
    assert not cols & {"full_name", "phone", "email"}
    flat = set(checked.features.astype(str).to_numpy().ravel())
    assert not flat & (phones | set(raw["full_name"]) | set(raw["email"]))
    assert raw["phone"].str.fullmatch(r"[0-9a-f]{64}").all()  # hashed in place before anything else reads it
    assert checked.features["cibil_score"].isna().sum() == (profiles["cibil_score"] == "").sum()
    assert checked.consent["scoring"].mean() == (profiles["consent_scoring"] == "Yes").mean()
    assert set(checked.consent) == {"scoring", "marketing_contact", "text_analysis"}


def test_spec_rejects_a_broken_row(world):
    profiles, _, _, _ = world
    raw = _raw(profiles.head(5))
    raw.loc[1, "cibil_score"] = "990"
    raw.loc[3, "city_tier"] = "7"
    checked = check_chunk(raw, load_spec(SPEC), 1, b"k" * 32)
    assert sorted(checked.rejects["row_number"]) == [2, 4]


@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_bad_fraction_makes_exactly_that_many_bad_events(world, fraction):
    profiles, intent, clean, _ = world
    events = sim.generate_events(profiles, intent, DAYS, 11, END, bad_fraction=fraction)
    items = list(events)
    good = len(clean)
    assert len(items) - good == events.n_bad == round(good * fraction / (1 - fraction))
    assert abs(events.n_bad / len(items) - fraction) < 0.001
    ids = set(profiles["lead_id"])
    now = datetime.now(UTC)
    found = Counter()
    for (topic, key, value), kind in zip(items, events.bad_kind, strict=True):
        assert problem(topic, key, value, ids, now) == kind
        found[kind] += 1
    assert set(found) == {None, *sim.BAD_KINDS}
    assert found[None] == good


def test_bad_fraction_out_of_range():
    profiles, intent = sim.generate_profiles(10, 1, END - timedelta(days=5), 5)
    with pytest.raises(ValueError, match="bad_fraction"):
        sim.generate_events(profiles, intent, 5, 1, END, bad_fraction=1.0)


def test_live_events_are_stamped_when_produced():
    profiles, intent = sim.generate_profiles(50, 3, END - timedelta(days=7), 7)
    events = sim.generate_events(profiles, intent, 7, 3, END, live=True)
    it = iter(events)
    topic, _, value = next(it)
    first = RECORD_FOR_TOPIC[topic].loads(value).event_time
    assert abs((datetime.now(UTC) - first).total_seconds()) < 2
    time.sleep(0.05)
    topic, _, value = next(it)
    assert RECORD_FOR_TOPIC[topic].loads(value).event_time >= first + timedelta(seconds=0.04)


class FakeProducer:
    """Stands in for AIOKafkaProducer: records what is sent and when."""

    sent: list = []

    def __init__(self, **config):
        self.config = config

    async def start(self):
        FakeProducer.sent = []

    async def send(self, topic, value=None, key=None):
        import asyncio

        FakeProducer.sent.append((topic, key, value, time.monotonic()))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def flush(self):
        pass

    async def stop(self):
        pass


def test_produce_keys_by_lead_and_keeps_the_rate(monkeypatch):
    import aiokafka

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", FakeProducer)
    profiles, intent = sim.generate_profiles(40, 3, END - timedelta(days=7), 7)
    events = sim.generate_events(profiles, intent, 7, 3, END)
    items = list(events)[:400]
    assert sim.produce("x:1", items, None, False) == 400
    assert [(t, k.decode(), v) for t, k, v, _ in FakeProducer.sent] == items
    started = time.monotonic()
    assert sim.produce("x:1", items, 1000.0, False) == 400
    took = time.monotonic() - started
    assert 0.3 < took < 1.5, took
    live = sim.generate_events(profiles, intent, 7, 3, END, live=True)
    sim.produce("x:1", live, 500.0, False)
    stamps = [RECORD_FOR_TOPIC[t].loads(v).event_time.timestamp() for t, _, v, _ in FakeProducer.sent]
    assert stamps[-1] - stamps[0] > 0.5 * len(stamps) / 500  # stamped as sent, at the rate, not all at once


@pytest.mark.parametrize(("text", "expected"), [("5000/s", 5000.0), ("5000", 5000.0), (" 250 /s", 250.0),
                                                ("max", None), ("MAX", None)])
def test_parse_rate(text, expected):
    assert sim.parse_rate(text) == expected


@pytest.mark.parametrize("text", ["fast", "-5/s", "0", "5000/min", ""])
def test_parse_rate_refuses_nonsense(text):
    with pytest.raises(typer.BadParameter, match="not a rate"):
        sim.parse_rate(text)


def test_simulate_writes_the_csv_and_counts(tmp_path):
    from infra.config import Settings

    settings = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "state")})
    result = sim.simulate(settings, 200, 10, None, 4, tmp_path / "sim", produce_events=False, bad_fraction=0.05,
                          end=END)
    csv = pd.read_csv(tmp_path / "sim" / "broker_leads.csv", dtype=str, keep_default_na=False)
    assert len(csv) == 200 and list(csv.columns) == list(sim.PROFILE_COLUMNS)
    assert result["leads"] == 200 and result["sent"] == 0
    assert result["events"] == sum(result["events_by_topic"].values()) + result["bad_events"]
    assert result["bad_events"] > 0 and result["seconds"] >= 0
    truth = pd.read_csv(tmp_path / "sim" / "broker_leads_truth.csv")
    assert list(truth["lead_id"]) == list(csv["lead_id"]) and truth["intent"].between(0, 1).all()


def test_command_prints_a_summary_and_refuses_bad_options(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADSCORE_STATE_DIR", str(tmp_path / "state"))
    app = typer.Typer()
    app.command()(sim.simulate_command)
    runner = CliRunner()
    out = tmp_path / "sim"
    result = runner.invoke(app, ["--leads", "100", "--days", "5", "--no-produce", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert re.search(r"simulated 100 leads .* \d+ events \(web \d+, .*not sent", result.output)
    assert (out / "broker_leads.csv").is_file()
    bad = runner.invoke(app, ["--rate", "fast", "--no-produce", "--out", str(out)])
    assert bad.exit_code == 2 and "not a rate" in bad.output
    bad = runner.invoke(app, ["--live", "--no-produce", "--out", str(out)])
    assert bad.exit_code == 2 and "--live" in bad.output

