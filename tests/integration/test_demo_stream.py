"""The main job's streaming step against the real stack: a simulated day through a real worker process."""

from __future__ import annotations

import pytest

from infra.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_simulated_day_streams_into_both_stores_and_a_live_event_shows_online(settings: Settings,
                                                                                 applied_store) -> None:  # noqa: ANN001
    from pipelines.demo_stream import stream_a_day

    day = stream_a_day(settings, print, leads=400, rate=3000.0, seed=3)
    assert day["events"] > 1000
    before, after, seconds = day["probe"]
    assert after == before + 1
    assert seconds < 10, "the live event took far longer than the 1 s aim (bench/streams.py measures it)"
    assert day["compared"] > 300 and day["same"] == day["compared"]
