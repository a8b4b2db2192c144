"""Natural micro-batching: /score requests that arrive while the model is busy are scored together in one call.

No timer and no added wait: the first request runs at once; requests arriving meanwhile queue up and go in the
next call, so under load one model call serves many requests (model time per row falls) and at low load a
request never waits for company. All model work runs on one thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class MicroBatcher:
    def __init__(self, fn: Callable[[Sequence[Any]], Sequence[Any]], executor: ThreadPoolExecutor | None,
                 max_batch: int = 256) -> None:
        self.fn = fn
        self.executor = executor
        self.max_batch = max_batch
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._running = False

    async def submit(self, item: Any) -> Any:
        """The result of `fn` for this item (or its exception), computed in some batch."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                if self.executor is None:
                    await asyncio.sleep(0)  # let the handlers already woken join this batch
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                try:
                    if self.executor is None:  # on the event loop: requests arriving meanwhile wait in the socket
                        results = self.fn([item for item, _ in batch])
                    else:
                        results = await loop.run_in_executor(self.executor, self.fn, [item for item, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._running = False
