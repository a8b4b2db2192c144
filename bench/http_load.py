"""A lean closed-loop HTTP/1.1 load generator (asyncio, keep-alive, pre-encoded requests) for bench/serving.py.

Python HTTP clients (httpx, aiohttp) spend more CPU per request than the server under test on a 2-core machine;
this one writes pre-built request bytes and reads Content-Length framed answers, so the client steals little.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence


def build_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One POST request as bytes (keep-alive, JSON body)."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _worker(host: str, port: int, requests: Sequence[bytes], start: int, stop_at: float, latencies: list[float],
                  errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            status, _ = await _read_response(reader)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
            i += 1
    finally:
        writer.close()


async def _run(host: str, port: int, requests: Sequence[bytes], concurrency: int, seconds: float,
               warmup_s: float) -> tuple[list[float], list[int], float]:
    if warmup_s > 0:
        await asyncio.gather(*(_worker(host, port, requests, k, time.perf_counter() + warmup_s, [], [])
                               for k in range(concurrency)))
    latencies: list[float] = []
    errors: list[int] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_worker(host, port, requests, k * 7919, t0 + seconds, latencies, errors)
                           for k in range(concurrency)))
    return latencies, errors, time.perf_counter() - t0


def closed_loop(host: str, port: int, requests: Sequence[bytes], concurrency: int, seconds: float = 10.0,
                warmup_s: float = 2.0) -> tuple[list[float], list[int], float]:
    """`concurrency` connections each sending the next request as soon as the last answer came, for `seconds`.

    Returns (latencies in seconds, non-200 statuses, elapsed seconds)."""
    return asyncio.run(_run(host, port, requests, concurrency, seconds, warmup_s))
