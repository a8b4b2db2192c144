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


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending its next request from the callback that completes the last answer: no
    coroutine, stream reader or task per request (the client's CPU per request is what the service does not get)."""

    def __init__(self, requests: Sequence[bytes], start: int, stop_at: float, latencies: list[float],
                 errors: list[int], done: asyncio.Future) -> None:
        self.requests, self.i, self.stop_at = requests, start, stop_at
        self.latencies, self.errors, self.done = latencies, errors, done
        self.buffer, self.need, self.status, self.sent = b"", -1, 0, 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.requests[self.i % len(self.requests)])
        self.i += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:  # the head
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
                self.status = int(head[9:12])
                self.need = 0
                for line in head.split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        self.need = int(line[15:].strip())
            if len(self.buffer) < self.need:
                return
            self.buffer, self.need = self.buffer[self.need:], -1
            now = time.perf_counter()
            self.latencies.append(now - self.sent)
            if self.status != 200:
                self.errors.append(self.status)
            if now >= self.stop_at:
                self.transport.close()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _worker(host: str, port: int, requests: Sequence[bytes], start: int, stop_at: float, latencies: list[float],
                  errors: list[int]) -> None:
    done = asyncio.get_running_loop().create_future()
    await asyncio.get_running_loop().create_connection(
        lambda: _Connection(requests, start, stop_at, latencies, errors, done), host, port)
    await done


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

    Returns (latencies in seconds, non-200 statuses, elapsed seconds). Runs on uvloop (as the service does): the
    client shares the machine's cores with the service, so every microsecond it saves goes to the service."""
    import uvloop

    return uvloop.run(_run(host, port, requests, concurrency, seconds, warmup_s))
