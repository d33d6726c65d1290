"""The persistent response cache: one SQLite file shared by every run on the machine.

Hand-written on stdlib ``sqlite3`` because LangChain's caches key on the model call alone and store
every raw generation before it is validated; guidedrl stores only answers that passed validation,
keyed by backend label, model, generation parameters and the full prompt.

Concurrency: WAL mode and a busy timeout let several processes read and write the same file; each
answer is written in one transaction, so a killed process leaves complete answers or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Literal

CacheMode = Literal["off", "read", "readwrite"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    answer TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def default_cache_path() -> Path:
    """``$GUIDEDRL_CACHE_DIR/llm_cache.sqlite``, by default ``~/.cache/guidedrl/llm_cache.sqlite``."""
    base = os.environ.get("GUIDEDRL_CACHE_DIR") or Path.home() / ".cache" / "guidedrl"
    return Path(base) / "llm_cache.sqlite"


def cache_key(*, backend: str, model: str, params: str, prompt: Any) -> str:
    """sha256 over everything that decides an answer: backend, model, generation params, prompt."""
    blob = json.dumps(
        {"backend": backend, "model": model, "params": params, "prompt": prompt},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Valid LLM answers (raw text) by :func:`cache_key`; safe across threads and processes."""

    def __init__(
        self, path: str | Path | None = None, *, mode: CacheMode = "readwrite", timeout_s: float = 30.0
    ):
        if mode not in ("off", "read", "readwrite"):
            raise ValueError(f"cache mode must be 'off', 'read' or 'readwrite', got {mode!r}")
        self.mode = mode
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if mode == "off":
            return
        if mode == "read" and not self.path.exists():
            return  # nothing to read yet; never create a file in read mode
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=timeout_s, check_same_thread=False, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            if mode == "readwrite":
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise OSError(
                f"cannot open the LLM response cache {str(self.path)!r}: {exc}. Set llm.cache_path (or "
                "GUIDEDRL_CACHE_DIR) to a writable place, or llm.cache = 'off'."
            ) from exc
        self._conn = conn

    @property
    def readable(self) -> bool:
        return self._conn is not None

    @property
    def writable(self) -> bool:
        return self._conn is not None and self.mode == "readwrite"

    def get(self, key: str) -> str | None:
        if self._conn is None:
            return None
        with self._lock:
            try:
                row = self._conn.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
            except sqlite3.OperationalError:  # e.g. read mode on a file without the table yet
                return None
        return row[0] if row else None

    def put(self, key: str, answer: str, *, backend: str, model: str, kind: str) -> None:
        if not self.writable:
            return
        assert self._conn is not None
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO answers (key, backend, model, kind, answer, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, backend, model, kind, answer, time.time()),
            )

    def __len__(self) -> int:
        if self._conn is None:
            return 0
        with self._lock:
            try:
                return int(self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
