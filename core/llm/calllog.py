"""The call log ``run_dir/llm_calls.jsonl`` and the counters of :meth:`LLMClient.summary`.

Both come from the same events, so the summary always matches the log. One JSON line per event:

- ``"event": "call"`` — one backend call (every attempt: validation re-asks and transient retries
  included);
- ``"event": "cache_hit"`` — a question answered from the response cache (no call);
- ``"event": "skipped"`` — a question (or its remaining attempts) not asked because a budget is spent.

Fields: ``ts``, ``q`` (question number in this run), ``kind``, ``attempt``, ``prompt_sha256`` (of the
question's first prompt, the cache key's prompt), ``backend``, ``model``, ``latency_s``, ``tokens``
(``null`` if the backend does not say), ``cache_hit``, ``valid`` (``null`` when the call errored),
``failed`` (the call errored and will not be retried), ``fallback`` (set on the last line of a
question that ended with its fallback value), ``error``; with ``log = "full"`` also ``prompt`` (the
messages of this attempt) and ``answer`` (the raw text). Each line is flushed when written.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO, Any

LOG_NAME = "llm_calls.jsonl"


class CallLog:
    """Counts events and appends them to the JSONL log (when a run directory is given)."""

    def __init__(self, run_dir: str | Path | None, *, full: bool = False) -> None:
        self.full = full
        self.path = Path(run_dir) / LOG_NAME if run_dir is not None else None
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.calls = 0
        self.cache_hits = 0
        self.failures = 0
        self.invalid = 0
        self.fallbacks = 0
        self.tokens = 0

    def write(self, event: str, *, prompt: Any = None, answer: str | None = None, **fields: Any) -> None:
        """Count one event and write its line. ``prompt``/``answer`` are kept only with ``full``."""
        line: dict[str, Any] = {"ts": round(time.time(), 3), "event": event, **fields}
        if self.full:
            if prompt is not None:
                line["prompt"] = prompt
            if answer is not None:
                line["answer"] = answer
        with self._lock:
            self.calls += event == "call"
            self.cache_hits += event == "cache_hit"
            self.failures += bool(fields.get("failed"))
            self.invalid += fields.get("valid") is False
            self.fallbacks += bool(fields.get("fallback"))
            self.tokens += int(fields.get("tokens") or 0)
            if self._file is not None:
                self._file.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def summarize_log(path: str | Path) -> dict[str, int]:
    """The counters of a call log, recomputed from its lines (what the summary must equal)."""
    counts = {
        "llm_calls": 0,
        "llm_cache_hits": 0,
        "llm_failures": 0,
        "llm_invalid": 0,
        "llm_fallbacks": 0,
        "llm_tokens": 0,
    }
    with Path(path).open(encoding="utf-8", errors="replace") as f:
        for raw in f:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:  # the torn last line of a killed run: the call was not logged
                continue
            if not isinstance(line, dict) or "event" not in line:
                continue
            counts["llm_calls"] += line["event"] == "call"
            counts["llm_cache_hits"] += line["event"] == "cache_hit"
            counts["llm_failures"] += bool(line.get("failed"))
            counts["llm_invalid"] += line.get("valid") is False
            counts["llm_fallbacks"] += bool(line.get("fallback"))
            counts["llm_tokens"] += int(line.get("tokens") or 0)
    return counts
