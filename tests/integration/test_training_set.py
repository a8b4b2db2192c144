"""Point-in-time joins on real PostgreSQL: hand-made cases with known answers, and equality with Feast's own join."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from infra.config import Settings
from pipelines.training_set import ViewSpec, point_in_time_join, view_spec_from_feast

pytestmark = pytest.mark.integration

T1, T2, T3 = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
US = timedelta(microseconds=1)
LEAD_COLS = "lead_id text, event_timestamp timestamptz, created_at timestamptz, score float8, band text, visits int8"
CITY_COLS = "city text, product text, event_timestamp timestamptz, created_at timestamptz, rate float8"


@pytest.fixture
def tables(settings: Settings) -> Iterator[tuple[str, str]]:
    """Two fresh tables with unique names (leads, city rates), dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = (f"public.pit_leads_{tag}", f"public.pit_city_{tag}")
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {names[0]} ({LEAD_COLS})")
        conn.execute(f"CREATE TABLE {names[1]} ({CITY_COLS})")
    yield names
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def insert(settings: Settings, table: str, rows: Sequence[tuple]) -> None:
    with psycopg.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(rows[0]))})", rows)


def lead_view(table: str, name: str = "leads", ttl: timedelta | None = timedelta(days=5)) -> ViewSpec:
    return ViewSpec(name=name, table=table, join_keys=("lead_id",), timestamp_column="event_timestamp",
                    created_column="created_at", features=("score", "band", "visits"), ttl=ttl)


def city_view(table: str) -> ViewSpec:
    return ViewSpec(name="city_rates", table=table, join_keys=("city", "product"), timestamp_column="event_timestamp",
                    created_column="created_at", features=("rate",), ttl=None)


def test_hand_made_cases_give_the_known_answers(settings: Settings, tables: tuple[str, str]) -> None:
    leads, city = tables
    insert(settings, leads, [
        ("A", T1, T1, 1.0, "low", 1),
        ("A", T2, T2, 2.0, "mid", 2),                    # same event time, created earlier: loses the tie
        ("A", T2, T2 + timedelta(hours=1), 2.5, "", 3),  # ... created later: wins (and "" is kept, not NULL)
        ("A", T3, T3, 3.0, "high", None),
        ("A", T3 + timedelta(days=1), None, 9.0, "null-created", 9),  # NULL created: ignored, as Feast does
        ("C", T1, T1, 7.0, "NA", 7),                     # "NA" is a string, not a missing value
    ])
    insert(settings, city, [
        ("Mumbai", "home", T1, T1, 6.5), ("Mumbai", "home", T3, T3, 6.25), ("Mumbai", "car", T1, T1, 9.0),
        ("Pune", "home", T2, T2, 6.0),
    ])
    #            lead, city, product, at, leads (ttl 5 d) row, leads_all (no ttl) row, city rate
    cases = [
        ("A", "Mumbai", "home", T1 - US, None, None, None),       # before the first row
        ("A", "Mumbai", "home", T1, 1, 1, 6.5),                   # exactly at t1: inclusive
        ("A", "Mumbai", "car", T2, 2, 2, 9.0),                    # exactly at t2: the later-created row
        ("A", "Pune", "home", T2 + timedelta(days=2), 2, 2, 6.0),  # between t2 and t3, within the TTL
        ("A", "Pune", "home", T2 + timedelta(days=5), 2, 2, 6.0),  # exactly t2 + TTL: inclusive (Feast's >=)
        ("A", "Pune", "car", T2 + timedelta(days=5) + US, None, 2, None),  # just past the TTL
        ("A", "Mumbai", "home", T3 - US, None, 2, 6.5),
        ("A", "Mumbai", "home", T3 + timedelta(days=2), 3, 3, 6.25),  # the NULL-created row is skipped
        ("A", "Mumbai", "home", T3 + timedelta(days=30), None, 3, 6.25),  # far beyond the TTL
        ("B", "Delhi", "home", T3, None, None, None),             # no rows for the lead, nor the city
        ("C", "Mumbai", "home", T1 + timedelta(days=1), 4, 4, 6.5),
    ]
    expected_rows = {1: (1.0, "low", 1), 2: (2.5, "", 3), 3: (3.0, "high", None), 4: (7.0, "NA", 7)}
    order = [5, 0, 9, 2, 7, 1, 10, 3, 8, 6, 4]  # neither sorted by lead nor by time
    entity_df = pd.DataFrame({
        "lead_id": [cases[i][0] for i in order], "city": [cases[i][1] for i in order],
        "product": [cases[i][2] for i in order], "event_timestamp": pd.to_datetime([cases[i][3] for i in order]),
        "label": [i % 2 for i in order],
    }, index=[100 + i for i in order])
    views = [lead_view(leads), lead_view(leads, "leads_all", ttl=None), city_view(city)]

    got = point_in_time_join(settings.pg_dsn(), entity_df, views, full_feature_names=True, chunk_rows=4)
    assert list(got.columns) == [*entity_df.columns, "leads__score", "leads__band", "leads__visits",
                                 "leads_all__score", "leads_all__band", "leads_all__visits", "city_rates__rate"]
    pd.testing.assert_frame_equal(got[entity_df.columns], entity_df)  # order, index and extra columns kept
    for (idx, row), case in zip(got.iterrows(), [cases[i] for i in order], strict=True):
        for view, want in (("leads", case[4]), ("leads_all", case[5])):
            values = expected_rows.get(want, (None, None, None))
            actual = (row[f"{view}__score"], row[f"{view}__band"], row[f"{view}__visits"])
            assert [None if pd.isna(v) else v for v in actual] == list(values), (idx, case, view)
        assert (None if pd.isna(row["city_rates__rate"]) else row["city_rates__rate"]) == case[6], (idx, case)
    assert got["leads__visits"].dtype == "float64" and got["leads__band"].dtype == object

    # short names; naive timestamps (taken as UTC) and other zones give the same answer
    for stamps in (entity_df["event_timestamp"].dt.tz_localize(None),
                   entity_df["event_timestamp"].dt.tz_convert("Asia/Kolkata")):
        short = point_in_time_join(settings.pg_dsn(), entity_df.assign(event_timestamp=stamps), views[:1])
        assert list(short.columns) == [*entity_df.columns, "score", "band", "visits"]
        pd.testing.assert_series_equal(short["score"], got["leads__score"], check_names=False)
        pd.testing.assert_series_equal(short["event_timestamp"], stamps)
    with psycopg.connect(settings.pg_dsn()) as conn:
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {f"{leads.split('.')[1]}_pit_idx", f"{city.split('.')[1]}_pit_idx"} <= indexes
    with pytest.raises(ValueError, match="collide"):
        point_in_time_join(settings.pg_dsn(), entity_df, views[:2])
    empty = point_in_time_join(settings.pg_dsn(), entity_df.iloc[:0], [views[0], views[2]])
    assert len(empty) == 0 and "city_rates__rate" not in empty.columns and "rate" in empty.columns


# --- equality with Feast ---------------------------------------------------------------------------------------

FEAST_TYPES = {"double precision": "Float64", "bigint": "Int64", "integer": "Int32", "text": "String"}


def feast_store(settings: Settings, repo: Path, project: str, views: Sequence[ViewSpec]):  # noqa: ANN201
    """A Feast repo in `repo` (file registry, SQLite online store, this stack's PostgreSQL offline store) with one
    entity per join key and a FeatureView per ViewSpec over PostgreSQLSource(table=); returns (store, refs)."""
    from feast import Entity, FeatureStore, FeatureView, Field, ValueType, types
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(f"""project: {project}
provider: local
registry: {{registry_type: file, path: {repo / 'registry.db'}}}
online_store: {{type: sqlite, path: {repo / 'online.db'}}}
offline_store:
  type: postgres
  host: {settings.pg_host}
  port: {settings.postgres_port}
  database: {settings.pg_db}
  db_schema: public
  user: {settings.pg_user}
  password: "{settings.secret('pg')}"
  sslmode: disable
entity_key_serialization_version: 3
""")
    store = FeatureStore(repo_path=str(repo))
    entities = {k: Entity(name=k, join_keys=[k], value_type=ValueType.STRING) for v in views for k in v.join_keys}
    objects: list = list(entities.values())
    with psycopg.connect(settings.pg_dsn()) as conn:
        for v in views:
            kinds = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                      "WHERE table_schema || '.' || table_name = %s", (v.table,)).fetchall())
            source = PostgreSQLSource(name=f"{v.name}_source", table=v.table, timestamp_field=v.timestamp_column,
                                      created_timestamp_column=v.created_column or "")
            objects.append(FeatureView(
                name=v.name, entities=[entities[k] for k in v.join_keys], ttl=v.ttl or timedelta(0), source=source,
                schema=[Field(name=c, dtype=getattr(types, FEAST_TYPES[kinds[c]])) for c in v.features]))
    store.apply(objects)
    return store, [f"{v.name}:{c}" for v in views for c in v.features]


def random_rows(rng: np.random.Generator, start: datetime) -> tuple[list[tuple], list[tuple]]:
    """300 leads x 3 rows (some ties on event time, a few NULL created) and 5 cities x 2 products x 20 rows."""
    leads, cities = [], []
    for i in range(300):
        times = sorted(start + timedelta(seconds=int(s)) for s in rng.integers(0, 86400 * 60, 3))
        if i % 10 == 0:
            times[1] = times[0]  # a tie on the event time, broken by created
        for j, t in enumerate(times):
            created = None if i % 37 == 5 and j == 2 else t + timedelta(seconds=int(rng.integers(1, 999)) + j)
            leads.append((f"L{i:04d}", t, created, float(rng.normal()), f"b{rng.integers(0, 4)}",
                          int(rng.integers(0, 50))))
    for c in range(5):
        for p in ("home", "car"):
            for s in rng.choice(86400 * 60, 20, replace=False):
                t = start + timedelta(seconds=int(s))
                cities.append((f"city{c}", p, t, t, float(rng.normal(7, 1))))
    return leads, cities


def test_equals_feast_get_historical_features(settings: Settings, tables: tuple[str, str], tmp_path: Path) -> None:
    leads, city = tables
    rng = np.random.default_rng(20260201)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    lead_rows, city_rows = random_rows(rng, start)
    insert(settings, leads, lead_rows)
    insert(settings, city, city_rows)
    views = [lead_view(leads, "leads", ttl=timedelta(days=7)), city_view(city)]

    n = 1000
    lead_ids = [f"L{i:04d}" for i in rng.integers(0, 330, n)]  # a tenth of them have no rows
    times = [start + timedelta(seconds=int(s)) for s in rng.integers(-86400 * 3, 86400 * 70, n)]
    for k in range(0, 60, 3):  # hit the bounds exactly: a row's own time, and that time + TTL (inclusive)
        row = lead_rows[int(rng.integers(0, len(lead_rows)))]
        while row[2] is None:  # a row Feast ignores would not test the bound
            row = lead_rows[int(rng.integers(0, len(lead_rows)))]
        lead_ids[k], times[k] = row[0], row[1]
        lead_ids[k + 1], times[k + 1] = row[0], row[1] + timedelta(days=7)
        lead_ids[k + 2], times[k + 2] = row[0], row[1] + timedelta(days=7, seconds=1)
    lead_ids[70:90], times[70:90] = lead_ids[100:120], times[100:120]  # duplicate entity rows
    lead_ids[95] = None  # a missing key matches nothing
    entity_df = pd.DataFrame({
        "row_id": np.arange(n), "lead_id": lead_ids,
        "city": [f"city{c}" for c in rng.integers(0, 6, n)], "product": rng.choice(["home", "car"], n),
        "event_timestamp": pd.to_datetime(times).tz_convert("Asia/Kolkata"), "label": rng.integers(0, 2, n),
    })

    store, refs = feast_store(settings, tmp_path / "repo", f"pit_{uuid.uuid4().hex[:8]}", views)
    theirs = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    specs = [view_spec_from_feast(store.get_feature_view(v.name)) for v in views]
    assert specs == views
    ours = point_in_time_join(settings.pg_dsn(), entity_df, specs, chunk_rows=300)

    features = ["score", "band", "visits", "rate"]
    assert len(theirs) == len(ours) == n
    theirs = theirs.sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(ours[["row_id", "lead_id", "label"]], theirs[["row_id", "lead_id", "label"]],
                                  check_dtype=False)
    pd.testing.assert_frame_equal(ours[features], theirs[features], check_dtype=False)
    matched = ours["score"].notna().mean()
    assert 0.2 < matched < 0.9 and 0.2 < ours["rate"].notna().mean() < 0.95  # both NULLs and values are compared
    assert ours.loc[1:58:3, "score"].notna().all() and ours.loc[2:59:3, "score"].isna().any()  # TTL bound hit


def test_specs_from_the_applied_repo_join_its_offline_tables(settings: Settings, applied_store) -> None:  # noqa: ANN001
    specs = {v: view_spec_from_feast(applied_store.get_feature_view(v))
             for v in ("lead_demographics", "lead_engagement", "market_context")}
    assert specs["lead_engagement"].table == "offline.lead_engagement"  # through its push source
    assert specs["market_context"].join_keys == ("city",) and specs["lead_demographics"].join_keys == ("lead_id",)
    assert specs["lead_engagement"].ttl == timedelta(days=30) and specs["market_context"].created_column == "created_at"
    assert len(specs["lead_engagement"].features) == 42
    entity_df = pd.DataFrame({"lead_id": ["pit-nobody-1", "pit-nobody-2"], "city": ["Nowhere", None],
                              "event_timestamp": [T1, T2]})
    got = point_in_time_join(settings.pg_dsn(), entity_df, list(specs.values()), full_feature_names=True)
    assert len(got.columns) == 3 + 9 + 42 + 4 and got.iloc[:, 3:].isna().all().all()
    assert "lead_demographics__city" in got.columns and got["city"].tolist() == ["Nowhere", None]
