"""The persistent response cache: one SQLite file shared by every run on the machine.

Hand-written on stdlib ``sqlite3`` because LangChain's caches key on the model call alone and store
every raw generation before it is validated; guidedrl stores only answers that passed validation,
keyed by backend label, model, generation parameters and the full prompt.

Concurrency: WAL mode and a busy timeout let several processes read and write the same file; each
answer is written in one transaction, so a killed process leaves complete answers or nothing.

The cache is rebuildable: a file that is damaged (garbage, truncated, fails SQLite's quick check) or
holds another schema version (``PRAGMA user_version``) is moved aside to
``<name>.corrupt-<time>`` with a :class:`~guidedrl.errors.RunFileWarning`, and a fresh cache is
used; the run goes on. In ``read`` mode nothing is moved or written: the run goes on without a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Literal

from guidedrl.errors import RunFileWarning

CacheMode = Literal["off", "read", "readwrite"]
SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the cache files this guidedrl writes (0: a file from before versioning
with the same table, adopted as version 1)."""
_COLUMNS = ["key", "backend", "model", "kind", "answer", "created"]

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
        self._timeout_s = timeout_s
        conn, problem = self._connect_checked()
        if problem is not None:
            if mode == "read":
                warnings.warn(
                    f"LLM response cache {self.path} {problem}; going on without a cache (llm.cache = 'read' "
                    "leaves the file as it is; 'readwrite' moves it aside and starts a fresh one)",
                    RunFileWarning,
                    stacklevel=2,
                )
                return
            aside = _move_aside(self.path)
            warnings.warn(
                f"LLM response cache {self.path} {problem}: moved it to {aside.name if aside else '(gone)'} and "
                "started a fresh one (the cache only saves calls; the run goes on)",
                RunFileWarning,
                stacklevel=2,
            )
            conn, problem = self._connect_checked()
            if problem is not None:
                raise OSError(f"cannot create a fresh LLM response cache at {str(self.path)!r}: {problem}")
        try:
            if mode == "readwrite":
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            conn.close()
            raise OSError(
                f"cannot open the LLM response cache {str(self.path)!r}: {exc}. Set llm.cache_path (or "
                "GUIDEDRL_CACHE_DIR) to a writable place, or llm.cache = 'off'."
            ) from exc
        self._conn = conn

    def _connect_checked(self) -> tuple[sqlite3.Connection, str | None]:
        """A connection and ``None``, or a closed one and what is wrong with the file."""
        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise OSError(
                f"cannot open the LLM response cache {str(self.path)!r}: {exc}. Set llm.cache_path (or "
                "GUIDEDRL_CACHE_DIR) to a writable place, or llm.cache = 'off'."
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout_s * 1000)}")
            problem = _schema_problem(conn)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                conn.close()
                raise OSError(f"the LLM response cache {str(self.path)!r} stayed locked: {exc}") from exc
            problem = f"is damaged ({exc})"
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            problem = f"is damaged ({exc})"
        if problem is not None:
            conn.close()
        return conn, problem

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
            except sqlite3.DatabaseError as exc:  # damaged while in use (by another process?)
                self._give_up(exc)
                return None
        return row[0] if row else None

    def _give_up(self, exc: Exception) -> None:
        """Stop using a cache that broke during the run (called holding the lock); the run goes on."""
        warnings.warn(
            f"LLM response cache {self.path} failed during the run ({exc}); going on without a cache",
            RunFileWarning,
            stacklevel=3,
        )
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def put(self, key: str, answer: str, *, backend: str, model: str, kind: str) -> None:
        if not self.writable:
            return
        assert self._conn is not None
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT OR REPLACE INTO answers (key, backend, model, kind, answer, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, backend, model, kind, answer, time.time()),
                )
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
                    raise
                self._give_up(exc)

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


def _schema_problem(conn: sqlite3.Connection) -> str | None:
    """What keeps this file from being used as the cache (damage, another schema), or ``None``."""
    check = conn.execute("PRAGMA quick_check").fetchone()
    if check is None or check[0] != "ok":
        return f"is damaged (SQLite quick check: {check[0] if check else 'no answer'})"
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    columns = [row[1] for row in conn.execute("PRAGMA table_info(answers)")] if "answers" in tables else None
    if version not in (0, SCHEMA_VERSION) or (columns is not None and columns != _COLUMNS) or tables - {"answers"}:
        return f"holds a cache of another guidedrl version (schema version {version}, tables {sorted(tables)})"
    return None


def _move_aside(path: Path) -> Path | None:
    """Rename ``path`` (and its ``-wal``/``-shm`` files) to ``<name>.corrupt-<time>``; ``None`` if another
    process moved it first. (Local rather than records.move_aside: the LLM layer does not import torch.)"""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            try:
                os.replace(side, target.with_name(target.name + suffix))
            except FileNotFoundError:
                pass
    return target
