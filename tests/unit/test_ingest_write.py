"""The pieces of ingest's writer that need no server: the keys seen so far and the CSV handed to COPY."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.ingest_write import SeenKeys, csv_text


def _frame(ids: list[str], seconds: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"lead_id": ids, "event_timestamp": pd.to_datetime(seconds, unit="s", utc=True)})


def test_seen_keys_flag_exactly_the_repeats_of_a_file_first_wins() -> None:
    """Random chunks full of repeats, within and across chunks: the flags are those of an exact set of tuples."""
    rng = np.random.default_rng(3)
    seen, exact = SeenKeys(), set()
    for _ in range(40):  # enough chunks for several block merges
        n = int(rng.integers(0, 400))
        ids = [f"L-{v}" for v in rng.integers(0, 3000, n)]
        secs = rng.integers(0, 3, n).tolist()  # the same lead at another time is another key
        want = []
        for key in zip(ids, secs, strict=True):
            want.append(key in exact)
            exact.add(key)
        assert seen.check_and_add(_frame(ids, secs)).tolist() == want
    assert len(seen) == len(exact)
    assert len(seen.blocks) <= int(np.log2(len(exact))) + 2  # merged like a binary counter


def test_the_copy_csv_keeps_null_apart_from_empty_text_and_writes_every_type() -> None:
    frame = pd.DataFrame({"s": ["a", "", None, 'x"y,z'], "i": pd.array([1, None, 3, -4], dtype="Int64"),
                          "f": [1.5, np.nan, 0.1, 1e20], "b": pd.array([True, None, False, True], dtype="boolean"),
                          "t": pd.to_datetime(["2026-01-01T00:00:00Z", None, "2026-01-01T00:00:00.123456Z",
                                               "2026-03-01T00:00:00Z"], utc=True, format="ISO8601")})
    lines = bytes(csv_text(frame)).decode().splitlines()
    assert lines[0] == '"a",1,1.5,true,2026-01-01 00:00:00.000000000Z'
    assert lines[1] == '"",,,,'  # an empty string quoted, missing values bare (NULL for COPY)
    assert lines[2] == ",3,0.1,false,2026-01-01 00:00:00.123456000Z"
    assert lines[3] == '"x""y,z",-4,1e+20,true,2026-03-01 00:00:00.000000000Z'
    mixed = pd.DataFrame({"o": [1, "two", 3.5]})  # Python objects Arrow will not take: pandas writes them
    assert csv_text(mixed).splitlines() == ["1", "two", "3.5"]
