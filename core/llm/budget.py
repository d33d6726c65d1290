"""Call budgets of one client: ``max_calls``, ``max_tokens`` and ``max_wall_s``.

Hand-written: LangChain has no budgets (its rate limiter paces calls, it does not stop them), and
the wall time that counts is the time callers spent waiting on the client, not the process's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from guidedrl.config import LLMConfig


class Budget:
    """Counts calls started and the callers' waiting time; says when a budget is spent.

    ``tokens`` is a callable returning the tokens used so far (the call log counts them). Once a
    budget is spent it stays spent: :attr:`exhausted` keeps ``{"reason", "limit", "at_call"}``.
    """

    def __init__(self, config: LLMConfig, tokens: Callable[[], int]) -> None:
        self.config = config
        self._tokens = tokens
        self.calls_started = 0
        self.exhausted: dict[str, Any] | None = None
        self._wall_s = 0.0
        self._waiting = 0
        self._waiting_since = 0.0
        self._lock = threading.Lock()

    def check(self) -> dict[str, Any] | None:
        """``None`` while every budget has room, else why not (and it stays so)."""
        if self.exhausted is not None:
            return self.exhausted
        cfg = self.config
        reason = None
        if cfg.max_calls is not None and self.calls_started >= cfg.max_calls:
            reason = ("max_calls", cfg.max_calls)
        elif cfg.max_tokens is not None and self._tokens() >= cfg.max_tokens:
            reason = ("max_tokens", cfg.max_tokens)
        elif cfg.max_wall_s is not None and self.wall_s() >= cfg.max_wall_s:
            reason = ("max_wall_s", cfg.max_wall_s)
        if reason is not None:
            self.spend(*reason)
        return self.exhausted

    def spend(self, reason: str, limit: Any) -> None:
        """Mark the budget ``reason`` spent (the first reason wins)."""
        if self.exhausted is None:
            self.exhausted = {"reason": reason, "limit": limit, "at_call": self.calls_started}

    def call_timeout(self) -> tuple[float, bool]:
        """The timeout of the next call, and whether it is cut short by what is left of ``max_wall_s``."""
        timeout = self.config.timeout_s
        if self.config.max_wall_s is not None:
            left = max(self.config.max_wall_s - self.wall_s(), 1e-3)
            if left < timeout:
                return left, True
        return timeout, False

    def start_waiting(self) -> None:
        with self._lock:
            if self._waiting == 0:
                self._waiting_since = time.monotonic()
            self._waiting += 1

    def stop_waiting(self) -> None:
        with self._lock:
            self._waiting -= 1
            if self._waiting == 0:
                self._wall_s += time.monotonic() - self._waiting_since

    def wall_s(self) -> float:
        """Seconds during which some caller was waiting on the client (overlapping waits count once)."""
        with self._lock:
            return self._wall_s + (time.monotonic() - self._waiting_since if self._waiting else 0.0)
