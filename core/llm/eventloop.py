"""The transport's own asyncio event loop, in a daemon thread.

Callable from any synchronous code, any number of times, and from code that already runs an event
loop; async HTTP clients (httpx) stay bound to one loop for the transport's life. Hand-written:
LangChain's sync ``invoke``/``batch`` start a loop per call, which such clients cannot survive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running in its own daemon thread, with a worker pool for sync backends."""

    def __init__(self, workers: int) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="guidedrl-llm"
        )
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(self.executor)
        self.thread = threading.Thread(target=self.loop.run_forever, name="guidedrl-llm-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread


def shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread, executor: Any, *closing: Any) -> None:
    """Cancel what runs on ``loop``, stop it and its thread, then close each of ``closing``."""

    async def cancel_all() -> None:  # a caller still waiting gets CancelledError, not a hang
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    if threading.current_thread() is thread:  # garbage-collected on the loop's own thread
        loop.stop()
        executor.shutdown(wait=False, cancel_futures=True)
        for item in closing:
            item.close()
        return
    if loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    executor.shutdown(wait=False, cancel_futures=True)  # a hung sync backend must not block exit
    if not loop.is_running():
        loop.close()
    for item in closing:
        item.close()


