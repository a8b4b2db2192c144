"""`leadscore simulate`: seeded Indian broker leads (real estate, home loans, insurance) and their event streams.

It writes the lead profiles as a CRM export (`broker_leads.csv`, loaded by `feature_repo/datasets/broker_leads.yaml`)
and produces each lead's web, email, WhatsApp/SMS, call and CRM-status events to Kafka, keyed by lead id. A hidden
intent (0-1) per lead drives how often and how deeply the lead engages, how fast and how warmly they reply, and -
with income, CIBIL score and city tier - how far they go down the funnel new -> contacted -> qualified -> site_visit
-> negotiation -> converted (or lost). The intent is never written to the profile file. The data feed demos, tests
and benchmarks: it is plausible, not a yardstick of model quality.

Everything is vectorised with numpy except the final JSON formatting, and the same seed gives byte-identical output.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:

    from infra.config import Settings

from pipelines.simulate_drift import DriftSpec, apply_drift
from pipelines.simulate_events import SimulatedEvents, generate_events  # noqa: F401 - the public API
from pipelines.simulate_profiles import BAD_KINDS, CRM, PROFILE_COLUMNS, WEB, generate_profiles  # noqa: F401


# ---------------------------------------------------------------------------------------------------- Kafka
def produce(bootstrap: str, events: Iterable[tuple[str, str, bytes]], rate: float | None = None,
            progress: bool = True, total: int | None = None, security: dict | None = None) -> int:
    """Send `(topic, key, value)` events to Kafka at about `rate` events/s (None: as fast as possible); return the
    count sent. Events are pulled from `events` only when the rate allows, so live events are stamped at send time.
    `security`: the broker's security settings (Settings.kafka_options())."""
    return asyncio.run(_produce(bootstrap, events, rate, progress, total, security or {}))


async def _produce(bootstrap: str, events: Iterable[tuple[str, str, bytes]], rate: float | None, progress: bool,
                   total: int | None, security: dict) -> int:
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    if total is None and hasattr(events, "__len__"):
        total = len(events)  # type: ignore[arg-type]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024,
                                acks=1, request_timeout_ms=30_000, **security)
    await producer.start()
    sent, pending = 0, []
    # a batch of sends per tick: small enough to keep the rate smooth, large enough to keep the producer busy
    chunk = 2000 if rate is None else max(1, min(2000, int(rate / 50)))
    bar = tqdm(total=total, unit="ev", disable=not progress, desc="producing", smoothing=0.1)
    started = time.monotonic()
    try:
        it = iter(events)
        done = False
        while not done:
            if rate is not None:  # token bucket: wait until the next chunk is due
                due = started + sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            for _ in range(chunk):
                try:
                    topic, key, value = next(it)
                except StopIteration:
                    done = True
                    break
                pending.append(await producer.send(topic, value=value, key=key.encode()))
                sent += 1
            if len(pending) >= 20_000 or done:
                await asyncio.gather(*pending)
                bar.update(len(pending))
                pending.clear()
        await producer.flush()
    finally:
        bar.close()
        await producer.stop()
    return sent


def ensure_source_topics(settings: Settings) -> list[str]:
    """Create the source (and dead-letter) topics if missing, with LEADSCORE_STREAM_PARTITIONS partitions: the
    stream workers need them pre-created with one count. Returns the names created."""
    from pipelines.streams.topics import ensure_topics

    return ensure_topics(settings)


# ---------------------------------------------------------------------------------------------------- the job
def simulate(settings: Settings, leads: int, days: int, rate: float | None, seed: int, out_dir: Path,
             produce_events: bool = True, live: bool = False, bad_fraction: float = 0.0,
             end: datetime | None = None, progress: bool = True, drift: DriftSpec | None = None) -> dict[str, Any]:
    """Write `out_dir/broker_leads.csv` (profiles, PII included: ingest hashes or drops it by the spec) and
    `out_dir/broker_leads_truth.csv` (hidden intent and outcome: for benchmarks, never ingested), then produce the
    events to Kafka. Returns counts: leads, events, events by topic, bad events, sent, outcomes, seconds."""
    started = time.monotonic()
    end = (end or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    if leads < 1 or days < 1:
        raise ValueError("leads and days must be at least 1")
    profiles, intent = generate_profiles(leads, seed, end - timedelta(days=days), days)
    profiles, funnel, activity, drifted = apply_drift(profiles, intent, drift or DriftSpec(), seed)
    events = generate_events(profiles, intent, days, seed, end, live=live, bad_fraction=bad_fraction,
                             funnel_intent=funnel, activity=activity)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "broker_leads.csv"
    profiles.to_csv(csv_path, index=False)
    import pandas as pd

    pd.DataFrame({"lead_id": profiles["lead_id"], "intent": intent.round(4), "outcome": events.outcome}).to_csv(
        out_dir / "broker_leads_truth.csv", index=False)
    sent = 0
    if produce_events:
        ensure_source_topics(settings)
        sent = produce(settings.kafka_bootstrap, events, rate, progress, security=settings.kafka_options())
    outcomes = Counter(events.outcome.tolist())
    return {
        "leads": leads, "events": len(events), "events_by_topic": events.counts(), "bad_events": events.n_bad,
        "sent": sent, "converted": outcomes.get("converted", 0), "lost": outcomes.get("lost", 0),
        "csv": str(csv_path), "seconds": round(time.monotonic() - started, 2), "drifted": drifted,
    }


def parse_rate(text: str) -> float | None:
    """'5000/s' or '5000' -> 5000.0 events/s; 'max' -> None (as fast as possible)."""
    value = text.strip().lower()
    if value in ("max", "unlimited"):
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(?:/\s*s)?", value)
    if not match or float(match.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not a rate: give events per second like 5000/s or 5000, or max",
                                 param_hint="--rate")
    return float(match.group(1))


def simulate_command(
    leads: Annotated[int, typer.Option(min=1, help="how many leads to simulate")] = 10000,
    days: Annotated[int, typer.Option(min=1, help="days of history, ending now")] = 30,
    rate: Annotated[str, typer.Option(help="events per second to Kafka: 5000/s, 5000 or max")] = "5000/s",
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same leads and events")] = 7,
    out: Annotated[Path, typer.Option(help="folder for broker_leads.csv (the profiles, for `ingest crm`)")] = Path(
        ".leadscore/sim"),
    no_produce: Annotated[bool, typer.Option("--no-produce", help="only write the CSV; send nothing")] = False,
    live: Annotated[bool, typer.Option("--live", help="stamp each event with the time it is sent")] = False,
    bad_fraction: Annotated[float, typer.Option(help="share of deliberately bad events (dead-letter demos), "
                                                "0 to 0.5")] = 0.0,
    drift_from: Annotated[str | None, typer.Option(help="leads created from this ISO date/time on drift (with the "
                                                   "options below)")] = None,
    income_factor: Annotated[float, typer.Option(help="covariate shift: drifted leads' incomes times this")] = 1.0,
    activity_factor: Annotated[float, typer.Option(help="covariate shift: drifted leads' web sessions times this")
                               ] = 1.0,
    new_city: Annotated[str | None, typer.Option(help="covariate shift: 30% of drifted leads from this new city")
                        ] = None,
    concept_drift: Annotated[bool, typer.Option("--concept-drift", help="drifted leads convert by a hidden intent "
                                                "unrelated to their behaviour")] = False,
) -> None:
    """Simulate Indian broker leads (profiles CSV) and their web, email, WhatsApp/SMS, call and CRM events."""
    per_s = parse_rate(rate)
    if not 0.0 <= bad_fraction <= 0.5:
        raise typer.BadParameter(f"{bad_fraction} is not a share between 0 and 0.5", param_hint="--bad-fraction")
    if live and no_produce:
        raise typer.BadParameter("--live stamps events as they are sent: it needs producing (drop --no-produce)",
                                 param_hint="--live")
    from infra.config import Settings

    drift = _drift_spec(drift_from, income_factor, activity_factor, new_city, concept_drift)
    r = simulate(Settings.load(), leads, days, per_s, seed, out, produce_events=not no_produce, live=live,
                 bad_fraction=bad_fraction, drift=drift)
    by_topic = ", ".join(f"{t.split('.')[-1]} {c}" for t, c in r["events_by_topic"].items())
    where = f"sent {r['sent']} to Kafka" if not no_produce else "not sent (--no-produce)"
    typer.echo(f"simulated {r['leads']} leads ({r['converted']} converted, {r['lost']} lost) -> {r['csv']}; "
               f"{r['events']} events ({by_topic}, bad {r['bad_events']}), {where} in {r['seconds']:.1f} s"
               + (f"; {r['drifted']} leads drifted from {drift_from}" if drift.active else ""))


def _drift_spec(start: str | None, income: float, activity: float, city: str | None, concept: bool) -> DriftSpec:
    """The drift options as a DriftSpec; options without --drift-from (or the reverse) are refused."""
    spec = DriftSpec(None, income, activity, city, concept)
    changes = income != 1.0 or activity != 1.0 or bool(city) or concept
    if start is None:
        if changes:
            raise typer.BadParameter("say when the drift starts: --drift-from 2026-11-20", param_hint="--drift-from")
        return spec
    if not changes:
        raise typer.BadParameter("--drift-from needs a drift: --income-factor, --activity-factor, --new-city or "
                                 "--concept-drift", param_hint="--drift-from")
    if income <= 0 or activity <= 0:
        raise typer.BadParameter("factors must be above 0", param_hint="--income-factor/--activity-factor")
    try:
        import pandas as pd

        stamp = pd.Timestamp(start)
    except ValueError:
        raise typer.BadParameter(f"{start!r} is not an ISO 8601 date or time", param_hint="--drift-from") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return DriftSpec(stamp.to_pydatetime(), income, activity, city, concept)

