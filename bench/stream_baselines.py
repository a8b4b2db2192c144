"""The baselines bench/streams.py prints its worker beside: a bare aiokafka consumer, and Faust agents that only take
the backlog (Faust's own per-message path, and the worker's batch handoff), each run in a process of its own."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.streams.schema import SOURCE_TOPICS  # noqa: E402


async def bare_read(bootstrap: str, expect: int) -> float:
    """Seconds a bare consumer needs to read `expect` messages from the start of the source topics."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*SOURCE_TOPICS, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    got, started = 0, None
    try:
        while got < expect:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if started is None and batch:
                started = time.monotonic()
            got += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    return time.monotonic() - (started or time.monotonic())


FAUST_FLOOR = """
import os, sys, time
import faust
from faust.worker import Worker
expect, bootstrap, topics, result = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
app = faust.App(f"bench-floor-{os.getpid()}", broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False,
                consumer_auto_offset_reset="earliest", topic_disable_leader=True)
source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
seen = {"n": 0, "t0": None}

@app.agent(source)
async def count(stream):
    async for events in stream.take_events(5000, within=0.1):
        seen["n"] += len(events)
        if seen["t0"] is None:  # counted from the first batch on, as the worker is
            seen["t0"], seen["n0"] = time.monotonic(), seen["n"]
        if seen["n"] >= expect:
            with open(result, "w") as out:  # Faust turns print() into log lines
                out.write(str((seen["n"] - seen["n0"]) / (time.monotonic() - seen["t0"])))
            os._exit(0)

worker = Worker(app, loglevel="WARNING", quiet=True)
worker.spinner = None  # as the worker: the spinner sets the root logger to DEBUG (see pipelines/streams/cli.py)
worker.execute_from_commandline()
"""


BATCH_FLOOR = """
import os, sys, time
from faust.worker import Worker
from pipelines.streams.app import DEFAULT_BATCH_SIZE, LeadStreamApp
from pipelines.streams.consumer import Handoff, take_batch
expect, bootstrap, topics, result = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
app = LeadStreamApp(f"bench-batch-floor-{os.getpid()}", broker=f"kafka://{bootstrap}", store="memory://",
                    web_enabled=False, consumer_auto_offset_reset="earliest", topic_disable_leader=True)
source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
handoff = app.handoff = Handoff(topics, 2 * DEFAULT_BATCH_SIZE)
app.flow_control.manage_queue(handoff)
seen = {"n": 0, "t0": None}

@app.agent(source)
async def count(stream):
    while True:
        messages = await take_batch(app, handoff, DEFAULT_BATCH_SIZE, 0.1)
        for message in messages:
            app.consumer.ack(message)
        seen["n"] += len(messages)
        if seen["t0"] is None:
            seen["t0"], seen["n0"] = time.monotonic(), seen["n"]
        if seen["n"] >= expect:
            with open(result, "w") as out:
                out.write(str((seen["n"] - seen["n0"]) / (time.monotonic() - seen["t0"])))
            os._exit(0)

worker = Worker(app, loglevel="WARNING", quiet=True)
worker.spinner = None
worker.execute_from_commandline()
"""


def faust_floor(bootstrap: str, expect: int, script: str = FAUST_FLOOR) -> float:
    """Events/s of a Faust agent that only takes the backlog in batches (the framework's own cost)."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as result:
        done = subprocess.run([sys.executable, "-c", script, str(expect), bootstrap, ",".join(SOURCE_TOPICS),
                               result.name], capture_output=True, text=True, timeout=600, cwd=REPO)
        text = Path(result.name).read_text().strip()
    if not text:
        raise RuntimeError(f"the Faust floor run failed: {(done.stdout + done.stderr)[-500:]}")
    return float(text)
