"""Simulated broker leads, part 2: every lead's events (web, email, WhatsApp/SMS, calls, CRM status).

See pipelines/simulate.py for the whole simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipelines import simulate_text as txt
from pipelines.simulate_profiles import (
    BAD_KINDS,
    CALL,
    CHANNELS,
    CRM,
    DAY_US,
    EMAIL,
    INVALID_VALUES,
    MIN_US,
    MSG,
    RECORD_NS,
    STATUSES,
    TOPICS,
    WEB,
    _cats,
    _daytime,
    _sigmoid,
    _us,
)
from pipelines.streams.schema import DIRECTIONS, EMAIL_ACTIONS, WEB_ACTIONS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


# ---------------------------------------------------------------------------------------------------- events
class SimulatedEvents:
    """Events in event-time order; iterate for `(topic, key, value)`, with `key` the lead id and `value` JSON bytes.

    The payloads are those of `pipelines.streams.records` (`Record.dumps()` field names and namespace). Iterating
    formats the JSON lazily; with `live` the `event_time` of each event is the moment it is yielded (sent).
    `bad[i]` / `bad_kind[i]` say which events are deliberately bad (`BAD_KINDS`), in the same order.
    """

    def __init__(self, cols: dict[str, np.ndarray], texts: list[str], lead_ids: list[str], seed: int, end_us: int,
                 live: bool, outcome: np.ndarray, outcome_us: np.ndarray) -> None:
        self._c, self._texts, self._ids = cols, texts, lead_ids
        self._seed, self._end_us, self.live = seed, end_us, live
        self.outcome = outcome            # per lead: "converted", "lost" or "open" by the end of the window
        self.outcome_us = outcome_us      # per lead: µs since epoch of that outcome (-1 for open)

    def __len__(self) -> int:
        return len(self._c["t"])

    @property
    def lead(self) -> np.ndarray:
        """Profile row of each event (negative for bad events about an unknown lead)."""
        return self._c["lead"]

    @property
    def topic(self) -> np.ndarray:
        return self._c["topic"]

    @property
    def code(self) -> np.ndarray:
        """The action / status / direction index of each event (see WEB_ACTIONS, EMAIL_ACTIONS, ...)."""
        return self._c["code"]

    @property
    def time_us(self) -> np.ndarray:
        return self._c["t"]

    @property
    def bad(self) -> np.ndarray:
        return self._c["bad"] > 0

    @property
    def bad_kind(self) -> list[str | None]:
        return [BAD_KINDS[k - 1] if k else None for k in self._c["bad"]]

    @property
    def n_bad(self) -> int:
        return int(self.bad.sum())

    def counts(self) -> dict[str, int]:
        """Good events per topic."""
        good = ~self.bad
        return {name: int(((self.topic == i) & good).sum()) for i, name in enumerate(TOPICS)}

    def __iter__(self) -> Iterator[tuple[str, str, bytes]]:
        import json

        import numpy as np

        c, texts, ids = self._c, self._texts, self._ids
        rng = np.random.default_rng([self._seed, 2])
        future = np.datetime_as_string(np.datetime64(self._end_us + 3650 * DAY_US, "us"), unit="us") + "Z"
        dumps = json.dumps
        n, step = len(self), 65_536
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            raw = np.frombuffer(rng.bytes(16 * (hi - lo)), dtype=np.uint8).reshape(-1, 16).copy()
            raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # a version-4 UUID, from the seeded generator
            raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
            hexs = raw.tobytes().hex()
            stamps = None if self.live else np.datetime_as_string(c["t"][lo:hi].astype("datetime64[us]"), unit="us")
            for j, i in enumerate(range(lo, hi)):
                h = hexs[32 * j: 32 * j + 32]
                eid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
                lead, topic, code, bad = int(c["lead"][i]), int(c["topic"][i]), int(c["code"][i]), int(c["bad"][i])
                lead_id = ids[lead] if lead >= 0 else f"BL-X{-lead:07d}"
                if self.live:
                    when = datetime.now(UTC) + (timedelta(days=3650) if bad == 4 else timedelta(0))
                    stamp = when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
                else:
                    stamp = stamps[j] + "Z" if bad != 4 else future
                field = ""
                if bad == 5:
                    field = INVALID_VALUES[int(c["spoil"][i]) % len(INVALID_VALUES)]
                if topic == WEB:
                    ref = int(c["ref"][i])
                    listing = "null" if ref < 0 else f'"{texts[ref]}"'
                    body = (f'"action":"{field or WEB_ACTIONS[code]}","duration_s":{float(c["dur"][i])!r},'
                            f'"listing_id":{listing}')
                elif topic == EMAIL:
                    body = f'"action":"{field or EMAIL_ACTIONS[code]}","campaign":"{texts[int(c["ref"][i])]}"'
                elif topic == MSG:
                    body = (f'"channel":"{CHANNELS[int(c["chan"][i])]}","direction":"{field or DIRECTIONS[code]}",'
                            f'"text":{dumps(texts[int(c["ref"][i])])}')
                elif topic == CALL:
                    body = (f'"direction":"{field or DIRECTIONS[code]}","duration_s":{float(c["dur"][i])!r},'
                            f'"notes":{dumps(texts[int(c["ref"][i])])}')
                else:
                    body = f'"status":"{field or STATUSES[code]}","broker_id":"{texts[int(c["ref"][i])]}"'
                head = f'"event_id":"{eid}","lead_id":"{lead_id}",'
                if bad == 2:  # a required field left out: the lead id, the time or the event id
                    head = (f'"event_id":"{eid}","event_time":"{stamp}",', f'"lead_id":"{lead_id}",',
                            f'"event_id":"{eid}","lead_id":"{lead_id}",')[int(c["spoil"][i]) % 3]
                else:
                    head += f'"event_time":"{stamp}",'
                value = f'{{{head}{body},"__faust":{{"ns":"pipelines.streams.records.{RECORD_NS[topic]}"}}}}'.encode()
                if bad == 1:  # cut in the middle, with a stray byte: not JSON
                    value = value[: len(value) // 2] + b"\xff"
                yield TOPICS[topic], lead_id, value


def generate_events(profiles: pd.DataFrame, intent: np.ndarray, days: int, seed: int, end: datetime,
                    live: bool = False, bad_fraction: float = 0.0, funnel_intent: np.ndarray | None = None,
                    activity: np.ndarray | None = None) -> SimulatedEvents:
    """Every lead's events over the `days` before `end`, in event-time order (see SimulatedEvents).

    `bad_fraction` of the events (0 <= f < 1) are deliberately bad, one of BAD_KINDS each, for dead-letter demos.
    Drift (pipelines/simulate_drift.py): `funnel_intent` drives the funnel instead of `intent` (which still drives
    behaviour: concept drift), `activity` multiplies each lead's web sessions (covariate shift).
    """
    import numpy as np
    import pandas as pd

    if not 0.0 <= bad_fraction < 1.0:
        raise ValueError(f"bad_fraction must be in [0, 1), not {bad_fraction}")
    n = len(profiles)
    intent = np.asarray(intent, dtype=float)
    if len(intent) != n:
        raise ValueError(f"{len(intent)} intents for {n} profiles")
    rng = np.random.default_rng([seed, 1])
    end_us = _us(end)
    start_us = end_us - days * DAY_US
    s = max(days, 1) / 30.0  # the funnel's pace follows the window, so a short window still shows outcomes
    created = pd.to_datetime(profiles["created_at"], utc=True).dt.tz_localize(None).to_numpy()
    created = created.astype("datetime64[us]").astype(np.int64)
    created = created.clip(start_us, end_us)

    # -- affordability (income, CIBIL, city tier) and intent decide how far a lead goes
    log_inc = np.log(pd.to_numeric(profiles["annual_income_inr"], errors="coerce").fillna(500_000).clip(1).to_numpy())
    cibil = pd.to_numeric(profiles["cibil_score"], errors="coerce").to_numpy()
    tier = pd.to_numeric(profiles["city_tier"], errors="coerce").fillna(2).to_numpy().astype(int)
    z_cibil = np.where(np.isnan(cibil), -0.4, (np.nan_to_num(cibil, nan=700) - 715) / 70)
    afford = 0.5 * (log_inc - 13.5) / 0.6 + 0.5 * z_cibil + np.array([0, 0.15, 0, -0.2])[tier.clip(1, 3)]
    # concept drift (a lead's funnel intent redrawn): affordability counts the other way round for it too
    flip = 1.0 if funnel_intent is None else np.where(np.asarray(funnel_intent) != intent, -1.0, 1.0)
    prop = flip * afford + rng.normal(0, 0.4, n)
    k, kf = intent, (intent if funnel_intent is None else np.asarray(funnel_intent, dtype=float))
    p_stage = np.stack([
        0.80 + 0.17 * kf,                                    # contacted
        _sigmoid(-1.6 + 4.2 * kf + 0.6 * prop),              # qualified
        _sigmoid(-1.1 + 4.0 * kf + 0.4 * prop),              # site_visit
        _sigmoid(-0.5 + 3.5 * kf + 0.5 * prop),              # negotiation
        _sigmoid(-0.3 + 3.5 * kf + 0.9 * prop),              # converted
    ], axis=1)
    mean_gap = np.array([0.25, 2.5, 3.0, 2.5, 3.0]) * s * DAY_US
    pace = (1.35 - kf)[:, None]
    gaps = (rng.exponential(1.0, (n, 5)) * mean_gap * pace).astype(np.int64) + 5 * MIN_US
    stage_t = np.concatenate([created[:, None], created[:, None] + np.cumsum(gaps, axis=1)], axis=1)  # (n, 6)
    passed = np.cumprod(rng.random((n, 5)) < p_stage, axis=1).astype(bool)
    reached = np.concatenate([np.ones((n, 1), bool), passed], axis=1) & (stage_t <= end_us)
    depth = reached.sum(axis=1) - 1  # index of the last status reached in the window
    converted = reached[:, 5]
    lost_t = stage_t[np.arange(n), depth] + (rng.exponential(4.0 * s, n) * DAY_US).astype(np.int64) + MIN_US
    lost = ~converted & (rng.random(n) < np.where(depth >= 1, 0.8, 0.4)) & (lost_t <= end_us)
    a_end = np.where(converted, stage_t[:, 5], np.where(lost, lost_t, end_us))
    outcome = np.where(converted, "converted", np.where(lost, "lost", "open"))
    active = (a_end - created) / DAY_US

    # -- per-lead flavour: product, channel, slots for text templates, broker, listings
    insurance = rng.random(n) < 0.15
    product = np.where(insurance, "insurance", "property")
    whatsapp = rng.random(n) < 0.85
    city = profiles["city"].to_numpy()
    income = np.exp(log_inc)
    locs = [txt.CITIES.get(c, ("", ("city centre",)))[1] for c in city]
    loc_pick = rng.integers(0, 1 << 30, n)
    budget_lakh = np.round(income * rng.uniform(3.5, 7.5, n) / 1e5 / 5).clip(2, 1000) * 5
    bhk = rng.integers(0, len(txt.BHK), n)
    day_pick = rng.integers(0, len(txt.WEEKDAYS), n)
    cover = np.where(income > 1.2e6, "2 crore", np.where(income > 6e5, "1 crore", "50 lakh"))
    premium = np.round(np.where(income > 1.2e6, 2400, 1200) * rng.uniform(0.7, 1.4, n), -1).astype(int)
    texts: list[str] = []

    def slots(i: int) -> dict[str, str]:
        loc = locs[i]
        return {"bhk": txt.BHK[bhk[i]], "locality": loc[loc_pick[i] % len(loc)], "city": city[i],
                "budget": txt.inr_amount(budget_lakh[i]), "day": txt.WEEKDAYS[day_pick[i]], "cover": cover[i],
                "premium": str(premium[i])}

    def add_texts(leads: np.ndarray, pools: dict[Any, tuple[str, ...]], keys: list) -> np.ndarray:
        """Fill a template per row (pool chosen by key) with its lead's slots; return indices into `texts`."""
        refs = np.empty(len(leads), dtype=np.int64)
        pick = rng.integers(0, 1 << 30, len(leads))
        for r, (i, key) in enumerate(zip(leads.tolist(), keys, strict=True)):
            pool = pools[key]
            refs[r] = len(texts)
            texts.append(pool[pick[r] % len(pool)].format(**slots(i)))
        return refs

    def tone(leads: np.ndarray) -> list[str]:
        i = intent[leads]
        u = rng.random(len(leads))
        high = u < 0.05 + 0.9 * i ** 1.3
        low = ~high & (u > 1 - 0.75 * (1 - i) ** 2)
        return np.where(high, "high", np.where(low, "low", "mid")).tolist()

    parts: list[dict[str, np.ndarray]] = []

    def emit(topic: int, leads: np.ndarray, t: np.ndarray, code: np.ndarray | int, dur: np.ndarray | float = 0.0,
             ref: np.ndarray | int = -1, chan: np.ndarray | int = 0) -> None:
        m = len(leads)
        parts.append({"lead": leads.astype(np.int64), "t": t.astype(np.int64),
                      "topic": np.full(m, topic, np.int8), "code": np.broadcast_to(code, m).astype(np.int8),
                      "dur": np.broadcast_to(dur, m).astype(float), "ref": np.broadcast_to(ref, m).astype(np.int64),
                      "chan": np.broadcast_to(chan, m).astype(np.int8)})

    def within(leads: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return lo + (rng.random(len(leads)) * np.maximum(hi - lo, 0)).astype(np.int64)

    # -- web: sessions in bursts, each a few events minutes apart ending in a `session` event
    lead_ix = np.arange(n)
    n_burst = rng.poisson(active * (0.03 + 0.3 * k ** 1.3) * (1.0 if activity is None else activity))
    b_lead = np.repeat(lead_ix, n_burst)
    b_t = _daytime(rng, within(b_lead, created[b_lead], a_end[b_lead]))
    b_size = 1 + rng.poisson(0.4 + 1.8 * k[b_lead])
    s_lead = np.concatenate([lead_ix, np.repeat(b_lead, b_size)])
    s_start = np.concatenate([created, np.repeat(b_t, b_size)])
    first = np.zeros(len(s_lead), bool)
    first[:n] = True  # the enquiry session: the lead filled in a form
    sg = np.cumsum(rng.exponential(2.0 * 3_600_000_000, len(s_lead) - n))  # sessions of a burst, hours apart
    heads = np.cumsum(b_size) - b_size
    s_start[n:] += (sg - np.repeat(sg[heads] if len(heads) else sg[:0], b_size)).astype(np.int64)
    m_ev = 1 + rng.poisson(1.2 + 4.0 * k[s_lead])
    e_sess = np.repeat(np.arange(len(s_lead)), m_ev)
    e_lead = s_lead[e_sess]
    ki = k[e_lead]
    probs = np.stack([0.50 - 0.15 * ki, 0.28 - 0.12 * ki, 0.08 + 0.10 * ki, 0.08 + 0.15 * ki,
                      np.zeros_like(ki), 0.015 + 0.03 * ki], axis=1)
    action = _cats(rng, probs)
    last_of_sess = np.cumsum(m_ev) - 1
    action[last_of_sess[first]] = WEB_ACTIONS.index("form_submission")
    gap = np.exp(rng.normal(np.log(50), 0.8, len(e_lead))) * 1e6
    cum = np.cumsum(gap)
    offset = cum - np.repeat(cum[np.cumsum(m_ev) - m_ev] - gap[np.cumsum(m_ev) - m_ev], m_ev)
    e_t = s_start[e_sess] + offset.astype(np.int64)
    with_listing = np.isin(action, (0, 2))
    listing_no = rng.integers(0, 4 + (6 * ki).astype(int))
    listing_ref = np.full(len(e_lead), -1, np.int64)
    prefix = np.where(insurance, "PLN", "LST")
    base = rng.integers(10_000, 99_000, n)
    for r in np.flatnonzero(with_listing):
        ld = e_lead[r]
        listing_ref[r] = len(texts)
        texts.append(f"{prefix[ld]}-{city[ld][:3].upper()}-{base[ld] + listing_no[r]:05d}")
    emit(WEB, e_lead, e_t, action, ref=listing_ref)
    s_end = e_t[last_of_sess] + (np.exp(rng.normal(np.log(40), 0.6, len(s_lead))) * 1e6).astype(np.int64)
    emit(WEB, s_lead, s_end, WEB_ACTIONS.index("session"), dur=np.round((s_end - s_start) / 1e6, 1))

    # -- email: a welcome mail and a drip to leads who allow marketing; opens and clicks rise with intent
    mk = (profiles["consent_marketing"].to_numpy() == "Yes")
    n_mail = np.where(mk, 1 + rng.poisson(active / 4.0), 0)
    m_lead = np.repeat(lead_ix, n_mail)
    m_first = np.zeros(len(m_lead), bool)
    m_first[np.cumsum(n_mail)[n_mail > 0] - n_mail[n_mail > 0]] = True
    m_t = np.where(m_first, created[m_lead] + rng.integers(2, 30, len(m_lead)) * MIN_US,
                   _daytime(rng, within(m_lead, created[m_lead], a_end[m_lead])))
    camp_names = {p: [f"{c}_{{}}" for c in txt.CAMPAIGNS[p]] for p in txt.CAMPAIGNS}
    camp_ref = np.empty(len(m_lead), np.int64)
    pick = rng.integers(0, 1 << 30, len(m_lead))
    for r, ld in enumerate(m_lead.tolist()):
        names = camp_names[product[ld]]
        camp_ref[r] = len(texts)
        texts.append("welcome" if m_first[r] else names[pick[r] % len(names)].format(
            datetime.fromtimestamp(m_t[r] / 1e6, UTC).strftime("%Y%m")))
    emit(EMAIL, m_lead, m_t, 0, ref=camp_ref)
    km = k[m_lead]
    opened = rng.random(len(m_lead)) < 0.12 + 0.6 * km
    o_t = m_t + (np.exp(rng.normal(np.log(4 * 3600), 1.2, len(m_lead))) * (1.3 - km) * 1e6).astype(np.int64)
    emit(EMAIL, m_lead[opened], o_t[opened], 1, ref=camp_ref[opened])
    clicked = opened & (rng.random(len(m_lead)) < 0.06 + 0.5 * km)
    c_t = o_t + rng.integers(20, 300, len(m_lead)) * 1_000_000
    emit(EMAIL, m_lead[clicked], c_t[clicked], 2, ref=camp_ref[clicked])

    # -- WhatsApp / SMS: broker messages, the lead's replies (faster and warmer with intent), broker follow-ups
    n_thr = 1 + rng.poisson(active * (0.05 + 0.35 * k))
    t_lead = np.repeat(lead_ix, n_thr)
    t_first = np.zeros(len(t_lead), bool)
    t_first[np.cumsum(n_thr) - n_thr] = True
    t_t = np.where(t_first, created[t_lead] + rng.integers(1, 10, len(t_lead)) * MIN_US,
                   _daytime(rng, within(t_lead, created[t_lead], a_end[t_lead])))
    chan = np.where(whatsapp[t_lead] ^ (rng.random(len(t_lead)) < 0.1), 0, 1)
    emit(MSG, t_lead, t_t, 1, ref=add_texts(t_lead, txt.OUTBOUND, product[t_lead].tolist()), chan=chan)
    kt = k[t_lead]
    replied = rng.random(len(t_lead)) < 0.2 + 0.7 * kt
    latency = np.exp(rng.normal(np.log(5 * 60 + 8 * 3600 * (1 - kt) ** 2), 0.9)) * 1e6
    r_lead, r_t, r_chan = t_lead[replied], (t_t + latency.astype(np.int64))[replied], chan[replied]
    keys = list(zip(product[r_lead].tolist(), tone(r_lead), strict=True))
    emit(MSG, r_lead, r_t, 0, ref=add_texts(r_lead, txt.INBOUND, keys), chan=r_chan)
    follow = rng.random(len(r_lead)) < 0.5
    f_t = r_t + (np.exp(rng.normal(np.log(10 * 60), 0.8, len(r_lead))) * 1e6).astype(np.int64)
    emit(MSG, r_lead[follow], f_t[follow], 1, chan=r_chan[follow],
         ref=add_texts(r_lead[follow], txt.OUTBOUND, product[r_lead[follow]].tolist()))
    bye = np.flatnonzero(lost & (rng.random(n) < 0.4 + 0.3 * (1 - k)))  # a last word before the lead is lost
    emit(MSG, bye, lost_t[bye] - rng.integers(30, 600, len(bye)) * MIN_US, 0, chan=np.where(whatsapp[bye], 0, 1),
         ref=add_texts(bye, txt.INBOUND, [(product[i], "low") for i in bye.tolist()]))

    # -- calls: the contact call, follow-ups (often unanswered when intent is low), a call on the site-visit day
    c_parts = [
        (np.flatnonzero(reached[:, 1]), stage_t[reached[:, 1], 1], True),
        (np.flatnonzero(reached[:, 3]), stage_t[reached[:, 3], 3] - 90 * MIN_US, True),
    ]
    n_call = rng.poisson(active * (0.02 + 0.18 * k) + np.where(reached[:, 1], 0, 1.5))
    x_lead = np.repeat(lead_ix, n_call)
    c_parts.append((x_lead, _daytime(rng, within(x_lead, created[x_lead], a_end[x_lead])), False))
    for leads, t, sure in c_parts:
        kc = k[leads]
        inbound = ~sure & (rng.random(len(leads)) < 0.1 + 0.4 * kc)
        reach = sure | (rng.random(len(leads)) < 0.45 + 0.45 * kc)
        dur = np.where(reach, np.exp(rng.normal(np.log(90 * (1 + 2 * kc)), 0.7)), rng.integers(0, 25, len(leads)))
        notes = np.full(len(leads), -1, np.int64)
        rr = np.flatnonzero(reach)
        notes[rr] = add_texts(leads[rr], txt.CALL_NOTES, list(zip(product[leads[rr]].tolist(), tone(leads[rr]),
                                                                   strict=True)))
        un = np.flatnonzero(~reach)
        for r in un.tolist():
            notes[r] = len(texts)
            texts.append(txt.UNREACHED_NOTES[int(rng.integers(0, len(txt.UNREACHED_NOTES)))])
        emit(CALL, leads, t, np.where(inbound, 0, 1), dur=np.round(dur, 1), ref=notes)

    # -- CRM status changes
    brokers = [f"BRK-{i:03d}" for i in range(40)]
    texts_base = len(texts)
    texts.extend(brokers)
    broker = texts_base + rng.integers(0, len(brokers), n)
    for st in range(6):
        leads = np.flatnonzero(reached[:, st])
        emit(CRM, leads, stage_t[leads, st], st, ref=broker[leads])
    ll = np.flatnonzero(lost)
    emit(CRM, ll, lost_t[ll], STATUSES.index("lost"), ref=broker[ll])

    cols = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    is_crm = cols["topic"] == CRM
    keep = is_crm | ((cols["t"] <= a_end[cols["lead"]]) & (cols["t"] >= created[cols["lead"]]))
    cols = {key: v[keep] for key, v in cols.items()}
    cols["bad"] = np.zeros(len(cols["t"]), np.int8)
    cols["spoil"] = np.zeros(len(cols["t"]), np.int64)

    if bad_fraction > 0:  # copies of random good events, each spoilt one way
        good = len(cols["t"])
        n_bad = int(round(good * bad_fraction / (1 - bad_fraction)))
        src = rng.integers(0, good, n_bad)
        bad = {key: v[src].copy() for key, v in cols.items()}
        bad["bad"] = (1 + rng.integers(0, len(BAD_KINDS), n_bad)).astype(np.int8)
        bad["lead"] = np.where(bad["bad"] == 3, -1 - rng.integers(0, 10_000_000, n_bad), bad["lead"])
        bad["spoil"] = rng.integers(0, 1 << 20, n_bad)  # which field goes missing, which wrong value
        cols = {key: np.concatenate([cols[key], bad[key]]) for key in cols}
    order = np.argsort(cols["t"], kind="stable")
    cols = {key: v[order] for key, v in cols.items()}
    outcome_us = np.where(converted, stage_t[:, 5], np.where(lost, lost_t, -1))
    return SimulatedEvents(cols, texts, profiles["lead_id"].tolist(), seed, end_us, live, outcome, outcome_us)


