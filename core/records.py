"""What a run leaves behind: run directory, resolved config, metrics, checkpoints, summary.

``runs/<env>__<methods>__<seed>__<time>/`` holds ``config.toml`` (re-runnable), ``metrics.jsonl``
(one JSON object per row, flushed at once), TensorBoard event files under ``tb/``,
``checkpoint.pt`` (what ``--resume`` continues from; written atomically), ``llm_calls.jsonl``
(written by the LLM layer) and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from guidedrl.config import RunConfig

SUMMARY_KEYS = (
    "env_steps",
    "best_return",
    "final_return",
    "wall_s",
    "llm_calls",
    "llm_cache_hits",
    "llm_failures",
)


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<env>__<methods>__<seed>__<time>`` (CleanRL's naming)."""
    env = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.env).strip("-")
    methods = "+".join(config.methods) or "none"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{env}__{methods}__{config.seed}__{stamp}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


class RunRecorder:
    """Writes metrics (JSONL + TensorBoard), checkpoints and the summary of one run."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(run_dir / "metrics.jsonl", "a", buffering=1)  # line-buffered: rows survive a kill
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))

    # metrics ----------------------------------------------------------------------------------
    def scalar(self, name: str, value: float, step: int) -> None:
        if self._tb is not None:
            self._tb.add_scalar(name, value, step)

    def row(self, step: int, values: dict[str, float]) -> None:
        """One metrics row (``env_steps`` plus named values) to JSONL and TensorBoard."""
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}
        self._metrics.write(json.dumps({"env_steps": step, **clean}, default=_jsonable) + "\n")
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.scalar(k, float(v), step)
        if self._tb is not None:
            self._tb.flush()

    def truncate_metrics(self, after_step: int) -> None:
        """Keep only rows at or before ``after_step`` (a resumed run redoes the later ones)."""
        path = self.run_dir / "metrics.jsonl"
        self._metrics.close()
        keep = [row for row in read_metrics(self.run_dir) if row.get("env_steps", 0) <= after_step]
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())
        self._metrics = open(path, "a", buffering=1)

    # checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically save a checkpoint (tensors, numbers, strings, plain containers only)."""
        import io

        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.checkpoint_path, buf.getvalue())

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint, loaded safely (``weights_only=True``: no code runs), or ``None``."""
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)

    # summary -----------------------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any]) -> None:
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            raise ValueError(f"summary lacks {missing}")
        atomic_write_json(self.run_dir / "summary.json", summary)

    def close(self) -> None:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


def load_run_checkpoint(source: str | Path, *, setting: str = "train.init_from") -> dict[str, Any]:
    """Another run's checkpoint, given its run directory or its ``checkpoint.pt``, loaded safely
    (``weights_only=True``). ``setting`` names what the user gave, for the error message."""
    from guidedrl.errors import ConfigError

    path = Path(source)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise ConfigError(f"{setting}: {str(path)!r} does not exist; give a run directory or its checkpoint.pt")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.jsonl`` (a torn last line from a killed run is skipped)."""
    rows = []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
