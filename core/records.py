"""What a run leaves behind, and how it is read back without running code or guessing.

``runs/<env>__<methods>__<seed>__<time>/`` holds:

- ``config.toml``: the resolved config (re-runnable; ``--resume`` requires it);
- ``metrics.jsonl``: one JSON object per row, flushed at once (a torn or garbage line is skipped
  with a warning when read);
- ``tb/``: TensorBoard event files (on resume, points after the checkpoint are *marked*: the new
  writer starts with ``purge_step``, so TensorBoard hides the old points from that step on; other
  readers of the raw event files still see them);
- ``checkpoint.pt``: what ``--resume`` continues from: ``torch.save`` of plain data (tensors,
  numbers, strings, containers), loaded with ``weights_only=True`` so that loading runs no code;
- ``buffer.npz`` (off-policy runs): the replay buffer that belongs to ``checkpoint.pt``, plain
  numeric arrays read with ``allow_pickle=False`` (layout: :func:`replay_buffer_arrays`);
- ``checkpoint.prev.pt`` / ``buffer.prev.npz``: the previous pair (``train.checkpoint_keep = 2``);
- ``llm_calls.jsonl`` (written by the LLM layer) and ``summary.json``.

A checkpoint and its buffer are one pair: both are written to temporary files
(``<name>.<random>.tmp``) and fsynced, then the complete previous pair is renamed to ``*.prev.*``
and the new pair renamed into place. Both carry the same ``pair_id``, so a reader never combines a
checkpoint with another checkpoint's buffer. A kill at any moment leaves at least one complete pair;
a damaged latest pair falls back to the previous one with a warning. Leftover ``*.tmp`` files of a
killed write are removed when a run starts in the directory.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from guidedrl.config import RunConfig
from guidedrl.errors import RunFileError, RunFileWarning

SUMMARY_KEYS = (
    "env_steps",
    "best_return",
    "final_return",
    "wall_s",
    "llm_calls",
    "llm_cache_hits",
    "llm_failures",
)

CHECKPOINT = "checkpoint.pt"
PREV_CHECKPOINT = "checkpoint.prev.pt"
BUFFER = "buffer.npz"
PREV_BUFFER = "buffer.prev.npz"
LEGACY_BUFFER = "buffer.h5"
"""Written by guidedrl before 0.2 through Tianshou's ``save_hdf5`` (pickled datasets): never loaded."""
LLM_LOG = "llm_calls.jsonl"
RUN_FILES = (
    "config.toml",
    "metrics.jsonl",
    "summary.json",
    LLM_LOG,
    CHECKPOINT,
    PREV_CHECKPOINT,
    BUFFER,
    PREV_BUFFER,
    LEGACY_BUFFER,
    "learning_curve.png",
    "tb",
)
"""What a run writes into its directory (``--overwrite`` removes exactly these)."""
BUFFER_FORMAT = "guidedrl-replay-buffer"
BUFFER_VERSION = 1


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    """``runs/<env>__<methods>__<seed>__<time>`` (CleanRL's naming)."""
    env = re.sub(r"[^A-Za-z0-9_.-]+", "-", config.env).strip("-")
    methods = "+".join(config.methods) or "none"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{env}__{methods}__{config.seed}__{stamp}"


# -- writing files ---------------------------------------------------------------------------------


def _write_tmp(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path.<random>.tmp`` completely (flushed and fsynced) and return it; on any error the
    temporary file is removed and the error raised (the real ``path`` is never touched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return Path(tmp)


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new file, never half of one."""
    tmp = _write_tmp(path, lambda f: f.write(data))
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return exc.strerror or str(exc)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def move_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt-<time>`` (kept for inspection) and return the new path."""
    target = path.with_name(f"{path.name}.corrupt-{_stamp()}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{_stamp()}-{n}")
    os.replace(path, target)
    return target


def remove_stale_tmp(run_dir: Path) -> list[str]:
    """Remove ``<run file>.*.tmp`` left behind by a write that a kill interrupted; returns their names."""
    removed = []
    if not run_dir.is_dir():
        return removed
    owners = tuple(name + "." for name in RUN_FILES)
    for path in run_dir.iterdir():
        if path.is_file() and path.name.endswith(".tmp") and path.name.startswith(owners):
            path.unlink()
            removed.append(path.name)
    return sorted(removed)


def run_files_in(run_dir: Path) -> list[str]:
    """The run files (``RUN_FILES``) present in ``run_dir``."""
    if not run_dir.is_dir():
        return []
    return [name for name in RUN_FILES if (run_dir / name).exists()]


def remove_run_files(run_dir: Path) -> None:
    """``--overwrite``: delete exactly the files a run writes (nothing else in the directory)."""
    import shutil

    for name in run_files_in(run_dir):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    for path in run_dir.glob("*.corrupt-*"):
        if path.name.startswith(tuple(name + "." for name in RUN_FILES)) and path.is_file():
            path.unlink()
    remove_stale_tmp(run_dir)


# -- checkpoints -----------------------------------------------------------------------------------


def _checkpoint_damage(path: Path, exc: BaseException) -> str:
    """What is wrong with a checkpoint file that ``torch.load`` could not read, in words."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes: the run was killed while writing it, or the disk was full)"
    with path.open("rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        return f"is not a checkpoint ({size} bytes that are not a PyTorch file: garbage, or another file copied over it)"
    if not zipfile.is_zipfile(path):
        return f"is truncated ({size} bytes; a copy or a write was cut short)"
    text = str(exc)
    if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
        return "holds Python objects that loading would have to execute, so it was not loaded"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"is damaged ({type(exc).__name__}: {first[:160]})"


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """One checkpoint file, loaded safely (``weights_only=True``: no code runs). A missing, damaged or
    foreign file raises :class:`RunFileError` naming the file and what is wrong (the caller adds the
    way forward)."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises EOFError, OSError, RuntimeError, UnpicklingError, IndexError, ...
        raise RunFileError(f"{path} {_checkpoint_damage(path, exc)}") from None
    if not isinstance(state, dict) or "env_steps" not in state:
        raise RunFileError(f"{path} is not a guidedrl checkpoint (it has no env_steps)")
    return state


def load_run_checkpoint(source: str | Path, *, setting: str = "train.init_from") -> dict[str, Any]:
    """Another run's checkpoint, given its run directory or its ``checkpoint.pt``, loaded safely
    (``weights_only=True``). ``setting`` names what the user gave, for the error message. Given a
    run directory whose latest checkpoint is damaged, its previous one is used (with a warning)."""
    from guidedrl.errors import ConfigError

    path = Path(source)
    if path.is_dir():
        found = find_checkpoint(path, fix=f"give {setting} another run")
        if found is None:
            raise ConfigError(f"{setting}: {str(path)!r} holds no checkpoint.pt; give a run directory that has one")
        return found[0]
    if not path.exists():
        raise ConfigError(f"{setting}: {str(path)!r} does not exist; give a run directory or its checkpoint.pt")
    try:
        return load_checkpoint_file(path)
    except RunFileError as exc:
        raise RunFileError(f"{setting}: {exc}; give another checkpoint (or its run directory)") from None


def find_checkpoint(
    run_dir: Path,
    *,
    fix: str,
    buffer_check: Callable[[dict[str, Any]], tuple[Any, str | None]] | None = None,
) -> tuple[dict[str, Any], str, Any, list[str]] | None:
    """The newest usable checkpoint of ``run_dir``: ``(state, file name, buffer_check's value,
    problems met on the way)``, or ``None`` when the directory has no checkpoint at all.

    ``checkpoint.pt`` is tried first, then ``checkpoint.prev.pt``. ``buffer_check(state)`` returns
    ``(value, problem)``: a problem (e.g. its buffer is missing or damaged) rules the checkpoint out
    like damage does. Using the previous checkpoint warns (:class:`RunFileWarning`) and says why;
    when none is usable, :class:`RunFileError` (with ``.problems``) names every problem and ends
    with ``fix``.
    """
    problems: list[str] = []
    for name in (CHECKPOINT, PREV_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = load_checkpoint_file(path)
        except RunFileError as exc:
            problems.append(str(exc))
            continue
        value = None
        if buffer_check is not None:
            value, problem = buffer_check(state)
            if problem:
                problems.append(problem)
                continue
        if problems:
            warnings.warn(
                f"{'; '.join(problems)}: using the previous checkpoint {path} (env step "
                f"{int(state['env_steps'])}) instead",
                RunFileWarning,
                stacklevel=2,
            )
        return state, name, value, problems
    if problems:
        error = RunFileError(f"{'; '.join(problems)}: {fix}")
        error.problems = problems  # type: ignore[attr-defined]
        raise error
    return None


# -- replay buffers (no pickle) ----------------------------------------------------------------------


def _flatten_batch(batch: Any, prefix: str, out: dict[str, np.ndarray], skipped: list[str]) -> None:
    from tianshou.data import Batch

    for key in batch.get_keys():
        value = batch[key]
        if isinstance(value, Batch):
            _flatten_batch(value, f"{prefix}{key}/", out, skipped)
            continue
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            skipped.append(prefix + key)
            continue
        out[prefix + key] = arr


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, arr in flat.items():
        node = nested
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = arr
    return nested


def _sub_buffers(buffer: Any) -> list[Any]:
    subs = getattr(buffer, "buffers", None)
    if subs is None:
        raise TypeError(f"expected a Tianshou VectorReplayBuffer, got {type(buffer).__name__}")
    return list(subs)


def _rng_arrays(prefix: str, rng: Any) -> dict[str, np.ndarray]:
    if not isinstance(rng, np.random.RandomState):
        return {}
    name, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
    return {
        f"{prefix}keys": np.asarray(keys, dtype=np.uint32),
        f"{prefix}pos": np.asarray(pos, dtype=np.int64),
        f"{prefix}has_gauss": np.asarray(has_gauss, dtype=np.int64),
        f"{prefix}cached_gaussian": np.asarray(cached, dtype=np.float64),
    }


def _set_rng(rng: Any, arrays: dict[str, np.ndarray], prefix: str) -> None:
    if isinstance(rng, np.random.RandomState) and f"{prefix}keys" in arrays:
        rng.set_state(
            (
                "MT19937",
                arrays[f"{prefix}keys"],
                int(arrays[f"{prefix}pos"]),
                int(arrays[f"{prefix}has_gauss"]),
                float(arrays[f"{prefix}cached_gaussian"]),
            )
        )


def replay_buffer_arrays(buffer: Any, pair_id: str) -> dict[str, np.ndarray]:
    """A Tianshou ``VectorReplayBuffer`` as plain arrays (what ``buffer.npz`` holds). Hand-written
    because Tianshou's ``save_hdf5``/``load_hdf5`` pickle Python objects, and loading must run no code.

    Layout (every entry a numeric, boolean or fixed-width string array; nothing pickled):

    - ``format`` = ``"guidedrl-replay-buffer"``, ``version`` = 1, ``pair_id``: the id of the
      checkpoint this buffer belongs to;
    - ``sizes[i]``: capacity of sub-buffer ``i`` (one per training env), ``lengths[i]``: how many
      transitions it holds, ``first[i]``: where its oldest one sits (0 until it is full);
    - ``data/<key>`` (nested keys joined by ``/``, e.g. ``data/policy/advised``): the transitions of
      sub-buffer 0 oldest first, then those of sub-buffer 1, ... (``sum(lengths)`` rows);
    - ``rng/<i>/...`` (``i`` = ``top`` or a sub-buffer): the sampling generators' states, when the
      buffer has them.

    Keys holding Python objects (e.g. strings of varying type in ``info``) cannot be stored without
    pickle and are left out with a warning.
    """
    subs = _sub_buffers(buffer)
    offsets = np.cumsum([0] + [int(b.maxsize) for b in subs])[:-1]
    order = [np.asarray(b.sample_indices(0), dtype=np.int64) + off for b, off in zip(subs, offsets, strict=True)]
    arrays: dict[str, np.ndarray] = {
        "format": np.asarray(BUFFER_FORMAT),
        "version": np.asarray(BUFFER_VERSION, dtype=np.int64),
        "pair_id": np.asarray(pair_id),
        "sizes": np.asarray([int(b.maxsize) for b in subs], dtype=np.int64),
        "lengths": np.asarray([len(o) for o in order], dtype=np.int64),
        "first": np.asarray(
            [int(o[0] - off) if len(o) == b.maxsize and len(o) else 0 for o, off, b in zip(order, offsets, subs, strict=True)],
            dtype=np.int64,
        ),
    }
    index = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
    if len(index):
        skipped: list[str] = []
        _flatten_batch(buffer[index], "data/", arrays, skipped)
        if skipped:
            warnings.warn(
                f"replay buffer: {', '.join(skipped)} hold Python objects and are not saved (they cannot "
                "be stored without pickle)",
                RunFileWarning,
                stacklevel=2,
            )
    arrays.update(_rng_arrays("rng/top/", getattr(buffer, "_random_state", None)))
    for i, sub in enumerate(subs):
        arrays.update(_rng_arrays(f"rng/{i}/", getattr(sub, "_random_state", None)))
    return arrays


def read_buffer_file(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``buffer.npz``, read with ``allow_pickle=False``; a damaged, foreign or
    pickled file raises :class:`RunFileError` saying what is wrong (nothing in it is executed)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise RunFileError(f"{path} does not exist") from None
    if size == 0:
        raise RunFileError(f"{path} is empty (0 bytes: the run was killed while writing it, or the disk was full)")
    if head != b"PK\x03\x04":
        raise RunFileError(f"{path} is not a replay buffer file ({size} bytes of something else: garbage, or another file copied over it)")
    if not zipfile.is_zipfile(path):
        raise RunFileError(f"{path} is truncated ({size} bytes; a copy or a write was cut short)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise RunFileError(
                f"{path} holds pickled Python objects; loading them could run code, so it was not loaded"
            ) from None
        raise RunFileError(f"{path} is damaged ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
        raise RunFileError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    if str(arrays.get("format", "")) != BUFFER_FORMAT or "lengths" not in arrays or "sizes" not in arrays:
        raise RunFileError(f"{path} is not a guidedrl replay buffer (no format marker)")
    if int(arrays.get("version", -1)) != BUFFER_VERSION:
        raise RunFileError(f"{path} is a replay buffer of format version {int(arrays.get('version', -1))}; this guidedrl reads version {BUFFER_VERSION}")
    lengths, sizes = arrays["lengths"], arrays["sizes"]
    first = arrays.get("first", np.zeros_like(lengths))
    if not (lengths.shape == sizes.shape == first.shape and (lengths <= sizes).all() and (first < np.maximum(sizes, 1)).all()):
        raise RunFileError(f"{path} is inconsistent (sub-buffer lengths {lengths.tolist()} do not fit sizes {sizes.tolist()})")
    rows = int(lengths.sum())
    for name, arr in arrays.items():
        if name.startswith("data/") and (arr.ndim == 0 or len(arr) != rows):
            raise RunFileError(f"{path} is inconsistent ({name} has {len(arr) if arr.ndim else 0} rows, lengths say {rows})")
    return arrays


def restore_replay_buffer(buffer: Any, arrays: dict[str, np.ndarray], *, source: str = BUFFER) -> None:
    """Fill an empty ``VectorReplayBuffer`` of the same shape with the transitions of
    :func:`replay_buffer_arrays`, oldest first, through the buffer's own ``add`` (so its episode
    bookkeeping is rebuilt by Tianshou, not by hand)."""
    from tianshou.data import Batch

    subs = _sub_buffers(buffer)
    sizes = [int(b.maxsize) for b in subs]
    if list(arrays["sizes"]) != sizes:
        raise RunFileError(
            f"{source} holds sub-buffers of sizes {list(arrays['sizes'])}, this run has {sizes}: the buffer "
            "belongs to a run with another buffer size or number of envs"
        )
    lengths = np.asarray(arrays["lengths"], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # A full sub-buffer's oldest transition sits at ``first[i]``: adding its first ``first[i]``
    # transitions once more beforehand (overwritten later) puts every transition back at the index
    # it had, so sampling with the restored generators picks the same transitions.
    first = np.asarray(arrays.get("first", np.zeros_like(lengths)), dtype=np.int64)
    rows = [np.concatenate([np.arange(f), np.arange(n)]) + s for f, n, s in zip(first, lengths, starts, strict=True)]
    data = Batch(_unflatten({k[len("data/") :]: v for k, v in arrays.items() if k.startswith("data/")}))
    for t in range(max((len(r) for r in rows), default=0)):
        ids = np.asarray([i for i, r in enumerate(rows) if len(r) > t], dtype=np.int64)
        buffer.add(data[np.asarray([rows[i][t] for i in ids])], buffer_ids=ids)
    _set_rng(getattr(buffer, "_random_state", None), arrays, "rng/top/")
    for i, sub in enumerate(subs):
        _set_rng(getattr(sub, "_random_state", None), arrays, f"rng/{i}/")


# -- the recorder ----------------------------------------------------------------------------------


class RunRecorder:
    """Writes metrics (JSONL + TensorBoard), checkpoint pairs and the summary of one run, and reads
    back the point a resumed run continues from."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, keep: int = 2) -> None:
        self.run_dir = Path(run_dir)
        self.keep = keep
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.stale_tmp_removed = remove_stale_tmp(self.run_dir)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a", buffering=1)  # line-buffered: rows survive a kill
        self._tensorboard = tensorboard
        self._tb: Any = None
        self._purge_step: int | None = None
        self.prior_segments: list[dict[str, Any]] = []
        """Segments (start to kill or end) of this run before the current one, from the checkpoint."""
        self.segment: dict[str, Any] = {"id": uuid.uuid4().hex, "started": time.time(), "status": "running", "flags": []}
        self.segment_info: Callable[[], dict[str, Any]] = dict
        """Extra numbers of the current segment (set by the runner: LLM wall time, backend, ...)."""
        self._t0 = time.perf_counter()
        self.resumed_from: str | None = None
        self._saved_steps: int | None = None
        self.resumed_state: dict[str, Any] | None = None
        """What :meth:`resume` returned: the checkpoint this segment continues from."""
        self.resumed_buffer: dict[str, np.ndarray] | None = None

    # metrics ----------------------------------------------------------------------------------
    def _writer(self) -> Any:
        if self._tb is None and self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=self._purge_step)
        return self._tb

    def scalar(self, name: str, value: float, step: int) -> None:
        writer = self._writer()
        if writer is not None:
            writer.add_scalar(name, value, step)

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
        """Keep only rows at or before ``after_step`` (a resumed run redoes the later ones); TensorBoard
        points after it are marked for TensorBoard to hide (``purge_step``)."""
        path = self.run_dir / "metrics.jsonl"
        self._metrics.close()
        keep = [row for row in read_metrics(self.run_dir) if row.get("env_steps", 0) <= after_step]
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in keep).encode())
        self._metrics = open(path, "a", buffering=1)
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._purge_step = after_step + 1

    # segments (one per start or resume of the run) -----------------------------------------------
    def segments(self) -> list[dict[str, Any]]:
        """Every segment so far, the current one with its wall time up to now."""
        now = {**self.segment, "wall_s": round(time.perf_counter() - self._t0, 3), **self.segment_info()}
        return [*self.prior_segments, now]

    # checkpoints -------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save_checkpoint(self, state: dict[str, Any], *, buffer: Any = None) -> None:
        """Save a checkpoint (tensors, numbers, strings, plain containers only) and, for off-policy
        runs, its replay buffer, as one pair (see the module docstring). A failed write (a full disk)
        leaves the previous pair as it was and raises :class:`RunFileError`."""
        pair_id = uuid.uuid4().hex
        segments = self.segments()
        segments[-1]["to_env_steps"] = int(state["env_steps"])
        state = {**state, "pair_id": pair_id, "has_buffer": buffer is not None, "segments": segments}
        written: list[tuple[Path, str]] = []
        name = BUFFER
        try:
            if buffer is not None:
                arrays = replay_buffer_arrays(buffer, pair_id)
                written.append((_write_tmp(self.run_dir / BUFFER, lambda f: np.savez(f, **arrays)), BUFFER))
            name = CHECKPOINT
            written.append((_write_tmp(self.run_dir / CHECKPOINT, lambda f: torch.save(state, f)), CHECKPOINT))
        except OSError as exc:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            kept = (
                f"{CHECKPOINT} (env step {self._saved_steps}) is kept as it was"
                if self._saved_steps is not None
                else "no checkpoint was written"
            )
            raise RunFileError(
                f"could not write {self.run_dir / name}: {_reason(exc)}; {kept}. Free some space, then continue with "
                "--resume"
            ) from None
        for cur, prev in ((CHECKPOINT, PREV_CHECKPOINT), (BUFFER, PREV_BUFFER)):
            if (self.run_dir / cur).exists():
                os.replace(self.run_dir / cur, self.run_dir / prev)
        for tmp, final in written:  # the buffer first: a checkpoint in place always has its buffer
            os.replace(tmp, self.run_dir / final)
        if buffer is None:
            (self.run_dir / BUFFER).unlink(missing_ok=True)
        if self.keep < 2:
            for prev in (PREV_CHECKPOINT, PREV_BUFFER):
                (self.run_dir / prev).unlink(missing_ok=True)
        _fsync_dir(self.run_dir)
        self._saved_steps = int(state["env_steps"])

    def resume(self, *, need_buffer: bool = False, allow_empty_buffer: bool = False) -> dict[str, Any] | None:
        """The checkpoint a resumed run continues from (``None`` when the directory has none), with
        ``resumed_buffer`` set to its replay buffer's arrays when ``need_buffer``. Metrics rows after
        it are dropped and TensorBoard points after it marked. A damaged latest pair falls back to
        the previous one (warning, counted in the segment's ``fallbacks``); a missing or unusable
        buffer is refused unless ``allow_empty_buffer``."""
        if self.resumed_from is not None:
            raise RuntimeError("resume() was already called")
        fix = (
            "start the run again (`--overwrite`); `train.checkpoint_keep = 2` (the default) keeps the "
            "previous checkpoint to fall back to"
        )
        buffer_problems: list[str] = []

        def buffer_of(state: dict[str, Any]) -> tuple[Any, str | None]:
            problem = None
            pair = state.get("pair_id")
            if pair is None or not state.get("has_buffer", False):
                if (self.run_dir / LEGACY_BUFFER).exists():
                    problem = (
                        f"{self.run_dir / LEGACY_BUFFER} was written by an older guidedrl through pickle "
                        "(loading it could run code), so it is not loaded"
                    )
                else:
                    problem = f"{self.run_dir / BUFFER} (the replay buffer of this off-policy run) is missing"
            else:
                damaged = []
                for name in (BUFFER, PREV_BUFFER):
                    path = self.run_dir / name
                    if not path.exists():
                        continue
                    try:
                        arrays = read_buffer_file(path)
                    except RunFileError as exc:
                        damaged.append(str(exc))
                        continue
                    if str(arrays["pair_id"]) == pair:
                        return (name, arrays), None
                problem = "; ".join(damaged) or f"{self.run_dir / BUFFER} (the replay buffer of this off-policy run) is missing"
            if problem not in buffer_problems:
                buffer_problems.append(problem)
            return None, problem

        try:
            found = find_checkpoint(self.run_dir, fix=fix, buffer_check=buffer_of if need_buffer else None)
        except RunFileError as exc:
            if not buffer_problems:
                raise
            problems = "; ".join(dict.fromkeys(getattr(exc, "problems", [str(exc)])))
            if not allow_empty_buffer:
                raise RunFileError(
                    f"{problems}: resuming would continue with an empty replay buffer; put the buffer back, "
                    "or pass --resume-without-buffer to continue with an empty one (recorded in summary.json)"
                ) from None
            found = find_checkpoint(self.run_dir, fix=fix)
            if found is not None:
                warnings.warn(
                    f"{problems}: --resume-without-buffer given, continuing with an empty replay buffer",
                    RunFileWarning,
                    stacklevel=2,
                )
                self.segment["flags"].append("--resume-without-buffer")
        if found is None:
            return None
        state, name, buffer, problems = found
        buffer_name, self.resumed_buffer = buffer if buffer is not None else (None, None)
        self.resumed_from = name
        self.segment["resumed_from"] = name
        self.segment["from_env_steps"] = int(state["env_steps"])
        if problems:
            self.segment["fallbacks"] = problems
        self._settle_pair(name, buffer_name)
        self.prior_segments = self._prior_segments(state)
        self.truncate_metrics(after_step=int(state["env_steps"]))
        self.resumed_state = state
        self._saved_steps = int(state["env_steps"])
        return state

    def _settle_pair(self, ckpt_name: str, buffer_name: str | None) -> None:
        """After a fallback, arrange the files so that the next save rotates the pair in use (not a
        damaged or unmatched file) into ``*.prev.*``: unusable newer files are moved aside
        (``<name>.corrupt-<time>``), kept for inspection."""
        if ckpt_name == PREV_CHECKPOINT and (self.run_dir / CHECKPOINT).exists():
            move_aside(self.run_dir / CHECKPOINT)
        if buffer_name == BUFFER and ckpt_name == PREV_CHECKPOINT:
            os.replace(self.run_dir / BUFFER, self.run_dir / PREV_BUFFER)
        elif buffer_name == PREV_BUFFER and (self.run_dir / BUFFER).exists():
            move_aside(self.run_dir / BUFFER)

    def _prior_segments(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The checkpoint's segments, each replaced by ``summary.json``'s record of it where that one
        is more complete (a segment that ended cleanly after its last checkpoint)."""
        segments = [dict(s) for s in state.get("segments", []) if isinstance(s, dict)]
        try:
            summary = json.loads((self.run_dir / "summary.json").read_text())
            ended = {s.get("id"): s for s in summary.get("segments", []) if isinstance(s, dict)}
        except (OSError, ValueError, AttributeError):
            ended = {}
        prior = [ended.get(s.get("id"), s) for s in segments]
        for s in prior:
            if s.get("status") == "running":  # no summary was written: killed after its last checkpoint
                s["status"] = "interrupted"
        return prior

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last usable checkpoint of this directory, loaded safely, or ``None`` (no fallback
        bookkeeping, no metrics truncation: for reading only)."""
        found = find_checkpoint(self.run_dir, fix="start a new run")
        return found[0] if found else None

    # summary -----------------------------------------------------------------------------------
    def write_summary(self, summary: dict[str, Any]) -> None:
        missing = [k for k in SUMMARY_KEYS if k not in summary]
        if missing:
            raise ValueError(f"summary lacks {missing}")
        try:
            atomic_write_json(self.run_dir / "summary.json", summary)
        except OSError as exc:
            raise RunFileError(f"could not write {self.run_dir / 'summary.json'}: {_reason(exc)}") from None

    def close(self) -> None:
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


# -- reading runs ------------------------------------------------------------------------------------


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.jsonl``. A torn line (a killed run) or a garbage line is skipped
    with a :class:`RunFileWarning` that counts them."""
    rows: list[dict[str, Any]] = []
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return rows
    bad: list[int] = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("env_steps"), int):
                bad.append(n)
                continue
            rows.append(row)
    if bad:
        warnings.warn(
            f"{path}: skipped {len(bad)} unreadable line(s) (line {', '.join(map(str, bad[:5]))}"
            f"{', ...' if len(bad) > 5 else ''}: a torn write from a killed run, or damage)",
            RunFileWarning,
            stacklevel=2,
        )
    return rows


def read_json_file(path: Path, *, what: str) -> dict[str, Any]:
    """A JSON object file (``summary.json``), or :class:`RunFileError` saying it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path} does not exist ({what})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(f"{path} is damaged (not valid JSON: {exc}); {what}") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path} is damaged (not a JSON object); {what}")
    return data


def llm_log_totals(run_dir: Path) -> dict[str, Any]:
    """The LLM counters recomputed from ``llm_calls.jsonl`` (every segment of the run: the log is
    appended to, never truncated) plus ``llm_backend_logged``, the backend of its last line; zeros
    when there is no log."""
    path = run_dir / LLM_LOG
    if not path.exists():
        return {"llm_calls": 0, "llm_cache_hits": 0, "llm_failures": 0, "llm_invalid": 0, "llm_fallbacks": 0, "llm_tokens": 0}
    from guidedrl.llm.calllog import summarize_log  # only here: the LLM package imports LangChain (seconds)
    totals: dict[str, Any] = dict(summarize_log(path))
    backend = None
    for raw in path.read_bytes().splitlines():
        if b'"backend"' in raw:
            try:
                backend = json.loads(raw).get("backend", backend)
            except (ValueError, AttributeError):
                continue
    totals["llm_backend_logged"] = backend
    return totals


def sum_segments(segments: Iterable[dict[str, Any]], key: str) -> float:
    return float(sum(float(s.get(key) or 0.0) for s in segments))
