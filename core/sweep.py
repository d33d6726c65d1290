"""Sweeps: a grid of settings × seeds, each trial an ordinary run directory, executed on Ray.

``guidedrl sweep CONFIG --grid llm.options.error_rate=0,0.1,0.2 --seeds 0-2 --out DIR`` expands the
grid into trials; each is an ordinary run (config ``DIR/trials/<trial>.toml``, run directory
``DIR/runs/<trial>``, log ``DIR/logs/<trial>.log``), run as ``guidedrl run`` would run it.

Ray core tasks, not Ray Tune: a trial is already a resumable run directory with its own checkpoint
and summary, so each Ray task only calls the runner once (in a Ray worker process, so a crash stays
inside its trial); Tune would add a second notion of trial directories, checkpoints and restore.

- Without ``--address`` a local Ray instance is started (``--parallel`` CPUs: at most that many
  trials at once); with ``--address ray://HOST:PORT`` or ``auto`` the sweep joins a cluster, whose
  nodes need guidedrl and the run's plugins installed, and ``--out`` on a filesystem they all see.
- Without Ray installed, or with ``--parallel 1`` / ``--backend local``, the same trials run one
  after another in this process (``--backend ray`` or ``--address`` without Ray is an error that
  names ``pip install 'guidedrl[ray]'``).
- Re-running a sweep with the same ``--out`` skips trials whose ``summary.json`` says ``finished``,
  resumes those with a checkpoint (``guidedrl run --resume``) and starts the rest afresh; a failing
  trial is reported (its log is ``DIR/logs/<trial>.log``), never fatal to the others.
- The LLM response cache is each node's default SQLite file (``$GUIDEDRL_CACHE_DIR``), shared by the
  trials on that node; see README's tour and docs/llm.md.

A sweep file is a run config with a ``[sweep]`` table::

    env = "CartPole-v1"              # the base config: any run setting
    steps = 20000
    [sweep]
    seeds = "0-2"                    # or [0, 1, 2]
    grid = { "ppo.lr" = [1e-3, 3e-4] }
    [[sweep.arms]]                   # optional: named variants, each crossed with the grid and seeds
    name = "plain"
    set = { methods = [] }
    [[sweep.arms]]
    name = "ultra"
    set = { methods = ["ultra"], "ultra.variant" = "ra" }
    grid = { "llm.options.error_rate" = [0.0, 0.2] }   # a grid for this arm only

In any string setting, ``"{seed}"`` is the trial's seed and ``{sweep}`` the sweep's directory (so a
second sweep can start from the first one's runs: ``train.init_from = "{sweep}/../a/runs/x__seed{seed}"``).

This module imports Ray only when a Ray backend runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from guidedrl.config import apply_overrides, from_dict, load, parse_override
from guidedrl.errors import ConfigError, GuidedRLError

RAY_HINT = "pip install 'guidedrl[ray]'"
_LOCAL_OBJECT_STORE = 200 * 2**20  # trials exchange only small results; keep Ray's shared memory small


class SweepError(GuidedRLError):
    """A sweep is defined wrongly or its backend cannot run; the message names the fix."""


# --- definition -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Arm:
    """A named variant of the base config, crossed with the sweep's grid (and its own) and seeds."""

    name: str
    set: dict[str, Any] = attrs.field(factory=dict)
    """Dotted settings this arm overrides (``methods``, ``ultra.variant``, ...)."""
    grid: dict[str, list[Any]] = attrs.field(factory=dict)
    """A grid for this arm only, crossed with the sweep's grid."""


@attrs.frozen(kw_only=True)
class Sweep:
    """A base run config, a grid of settings, arms and seeds."""

    base: dict[str, Any]
    """The base run config (nested, as TOML gives it)."""
    grid: dict[str, list[Any]] = attrs.field(factory=dict)
    """Dotted setting → values; every combination is a trial (per arm and seed)."""
    seeds: tuple[int, ...] = (0,)
    arms: tuple[Arm, ...] = ()

    def to_toml_data(self) -> dict[str, Any]:
        data = dict(self.base)
        sweep: dict[str, Any] = {"seeds": list(self.seeds), "grid": dict(self.grid)}
        if self.arms:
            sweep["arms"] = [{"name": a.name, "set": dict(a.set), "grid": dict(a.grid)} for a in self.arms]
        data["sweep"] = sweep
        return data


@attrs.frozen(kw_only=True)
class Trial:
    id: str
    """Directory name of the trial's run (``<arm>__<key=value>...__seed<N>``)."""
    config: dict[str, Any]
    """The trial's run config (nested), ``out`` included."""
    settings: dict[str, Any]
    """The arm's and grid's dotted settings of this trial (what distinguishes it), seed excluded."""
    seed: int


def parse_seeds(spec: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"0-4"`` → (0..4), ``"0,3,7"``, ``"2"``, or a list of ints."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return (spec,)
    if isinstance(spec, (list, tuple)):
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec):
            raise SweepError(f"seeds must be non-negative integers, got {list(spec)!r}")
        return tuple(spec)
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise SweepError(f"--seeds {spec!r}: range {part!r} runs backwards; write {hi}-{lo}")
            seeds += range(lo, hi + 1)
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise SweepError(f"--seeds expects e.g. 0-4 or 0,2,5, got {spec!r}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds {spec!r} names a seed twice")
    return tuple(seeds)


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and quotes (``[],["ultra"]`` → two items).

    Hand-written: csv does not know brackets, and a TOML array parse would reject bare strings.
    """
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_grid(items: Iterable[str]) -> dict[str, list[Any]]:
    """``["ppo.lr=1e-3,3e-4"]`` → ``{"ppo.lr": [0.001, 0.0003]}`` (values are TOML literals, else strings)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise SweepError(f"--grid expects key=v1,v2,... (e.g. ppo.lr=1e-3,3e-4), got {item!r}")
        if key in grid:
            raise SweepError(f"--grid names {key!r} twice; give all its values in one --grid")
        grid[key] = [parse_override(f"{key}={v}")[1] for v in _split_top(raw)]
    return grid


def _check_grid(grid: Mapping[str, Any], where: str) -> dict[str, list[Any]]:
    out = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: grid value of {key!r} must be a non-empty list, got {values!r}")
        out[str(key)] = list(values)
    return out


def load_sweep(path: str | Path) -> Sweep:
    """A :class:`Sweep` from a TOML file: a run config plus a ``[sweep]`` table (see module doc)."""
    data = load(path)
    spec = data.pop("sweep", None)
    if spec is None:
        return Sweep(base=data)
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: [sweep] must be a table with seeds, grid and arms")
    unknown = set(spec) - {"seeds", "grid", "arms"}
    if unknown:
        raise SweepError(f"{path}: unknown [sweep] setting(s) {sorted(unknown)}; valid: seeds, grid, arms")
    arms = []
    for i, arm in enumerate(spec.get("arms", [])):
        if not isinstance(arm, dict) or "name" not in arm:
            raise SweepError(f"{path}: [[sweep.arms]] #{i + 1} needs a name (and set = {{...}}, grid = {{...}})")
        extra = set(arm) - {"name", "set", "grid"}
        if extra:
            raise SweepError(f"{path}: [[sweep.arms]] {arm['name']!r}: unknown key(s) {sorted(extra)}; valid: name, set, grid")
        arms.append(Arm(name=str(arm["name"]), set=_flatten(arm.get("set", {})),
                        grid=_check_grid(arm.get("grid", {}), f"arm {arm['name']!r}")))
    if len({a.name for a in arms}) != len(arms):
        raise SweepError(f"{path}: two [[sweep.arms]] share a name")
    return Sweep(base=data, grid=_check_grid(spec.get("grid", {}), str(path)),
                 seeds=parse_seeds(spec.get("seeds", [0])), arms=tuple(arms))


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ultra": {"variant": "ra"}}`` → ``{"ultra.variant": "ra"}``: an arm's tables merge into the base's."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(_fmt(v) for v in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]+", "-", text).strip("-") or "x"


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    # apply_overrides parses strings; build the same nesting for already-typed values
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise SweepError(f"sweep setting {key!r}: {part!r} is a value, not a table")
        node = nxt
    node[parts[-1]] = value
    return data


def _fill_placeholders(value: Any, *, seed: int, out: Path) -> Any:
    """``"{seed}"`` → the trial's seed (an int); ``{seed}`` and ``{sweep}`` (the sweep's ``--out``)
    inside longer strings are replaced as text, e.g. ``train.init_from = "{sweep}/../a/runs/x__seed{seed}"``."""
    if isinstance(value, dict):
        return {k: _fill_placeholders(v, seed=seed, out=out) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_placeholders(v, seed=seed, out=out) for v in value]
    if isinstance(value, str):
        if value == "{seed}":
            return seed
        return value.replace("{seed}", str(seed)).replace("{sweep}", str(out))
    return value


def expand(sweep: Sweep, out: str | Path) -> list[Trial]:
    """Every trial of ``sweep`` (arms × grid × seeds), its config validated; ``out`` absolute."""
    out = Path(out).resolve()
    arms = sweep.arms or (Arm(name=""),)
    all_methods: set[str] = set()
    trials: list[Trial] = []
    for arm in arms:
        grid = {**sweep.grid, **arm.grid}
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            settings = {**arm.set, **dict(zip(keys, combo, strict=True))}
            for seed in sweep.seeds:
                config = apply_overrides(sweep.base, [])
                for key, value in settings.items():
                    _set_dotted(config, key, value)
                config["seed"] = seed
                config = _fill_placeholders(config, seed=seed, out=out)
                methods = config.get("methods", [])
                if isinstance(methods, str):
                    methods = [m.strip() for m in methods.split(",") if m.strip()]
                config["methods"] = list(methods)
                all_methods.update(config["methods"])
                parts = [arm.name] if arm.name else []
                parts += [f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in zip(keys, combo, strict=True)]
                if not parts:
                    parts = ["+".join(config["methods"]) or "none"]
                trial_id = _slug("__".join(parts)) + f"__seed{seed}"
                config["out"] = str(out / "runs" / trial_id)
                trials.append(Trial(id=trial_id, config=config, settings=settings, seed=seed))
    # A method's table in the base config belongs only to trials that run that method.
    for t in trials:
        for name in all_methods - set(t.config["methods"]):
            t.config.pop(name, None)
    ids = [t.id for t in trials]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SweepError(f"two trials would share the run directory {dupes[0]!r}; give the arms distinct names")
    for t in trials:
        try:
            from_dict(t.config)
        except ConfigError as exc:
            raise SweepError(f"trial {t.id}: {exc}") from None
    return trials


# --- running --------------------------------------------------------------------------------------


def trial_state(run_dir: Path) -> str:
    """``finished`` (skip), ``resume`` (has a checkpoint) or ``fresh``."""
    summary = run_dir / "summary.json"
    if summary.exists():
        try:
            if json.loads(summary.read_text()).get("status") == "finished":
                return "finished"
        except (json.JSONDecodeError, OSError):
            pass
    return "resume" if (run_dir / "checkpoint.pt").exists() else "fresh"


def prepare_trial(trial: Trial, out: Path) -> tuple[Path, str]:
    """Write the trial's config to ``out/trials/<id>.toml``; return it and the trial's state
    (``fresh`` or ``resume``). A run directory without a checkpoint holds nothing to resume and is
    cleared, so the trial starts clean."""
    import tomli_w

    run_dir = Path(trial.config["out"])
    state = trial_state(run_dir)
    cfg_path = out / "trials" / f"{trial.id}.toml"
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(tomli_w.dumps(trial.config))
    if state == "fresh" and run_dir.exists():
        shutil.rmtree(run_dir)
    return cfg_path, state


def run_trial(config_path: str, resume: bool, log_path: str) -> dict[str, Any]:
    """Run one trial in this process, as ``guidedrl run CONFIG [--resume]`` would; never raises for
    the trial's own failure (KeyboardInterrupt aside). The Ray backend calls it inside a Ray worker,
    which Ray reuses for later trials, so imports and Tianshou's numba compilation (~10 s) are paid
    once per worker rather than once per trial; a crash of the worker fails only its trial."""
    import platform
    import traceback

    t0 = time.perf_counter()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    rc, error = 0, ""
    with open(log_path, "a") as log:
        log.write(f"\n$ guidedrl run {config_path}{' --resume' if resume else ''}   # on {platform.node()} pid {os.getpid()}\n")
        log.flush()
        try:
            from guidedrl.train import train

            result = train(from_dict(load(config_path)), resume=resume)
            s = result.summary
            log.write(f"run finished: best test return {s['best_return']}, final {s['final_return']}, "
                      f"{s['env_steps']} env steps in {s['wall_s']:.0f}s; LLM: {s['llm_calls']} calls, "
                      f"{s['llm_cache_hits']} cache hits, {s['llm_failures']} failures\n")
        except GuidedRLError as exc:
            rc, error = 2, str(exc)
            log.write(f"guidedrl: error: {exc}\n")
        except Exception as exc:  # a bug or a broken env: reported with the trial, the sweep goes on
            rc, error = 1, f"{type(exc).__name__}: {exc}"
            log.write(traceback.format_exc())
    return {"rc": rc, "wall_s": round(time.perf_counter() - t0, 2), "host": platform.node(), "node": _ray_node(),
            "error": error[:500]}


def _ray_node() -> str:
    """The Ray node id this trial ran on ("" outside Ray): which machine of a cluster, even when two
    nodes share a host name."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


@attrs.define
class Outcome:
    trial: Trial
    status: str
    """``finished``, ``skipped`` (finished before), or ``failed``."""
    state: str = ""
    """What this sweep did: ``fresh``, ``resume`` or ``finished`` (skipped)."""
    rc: int | None = None
    wall_s: float = 0.0
    host: str = ""
    node: str = ""
    """Ray node id ("" on the local backend)."""
    error: str = ""


def _outcome(trial: Trial, state: str, result: dict[str, Any]) -> Outcome:
    run_dir = Path(trial.config["out"])
    ok = result["rc"] == 0 and trial_state(run_dir) == "finished"
    error = result.get("error", "")
    if not ok and not error:
        error = f"exit code {result['rc']}, no finished summary.json"
    return Outcome(trial=trial, status="finished" if ok else "failed", state=state, rc=result["rc"],
                   wall_s=result["wall_s"], host=result.get("host", ""), node=result.get("node", ""),
                   error="" if ok else error)


class _Progress:
    """A rich progress bar: trials done / running / failed (skipped ones count as done)."""

    def __init__(self, total: int, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.counts = {"done": 0, "running": 0, "failed": 0, "skipped": 0}
        self._p = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                           TimeElapsedColumn(), disable=not enabled, transient=False)
        self._task = self._p.add_task(self._text(), total=total)

    def _text(self) -> str:
        c = self.counts
        return f"done {c['done']} (skipped {c['skipped']}) · running {c['running']} · failed {c['failed']}"

    def __enter__(self) -> _Progress:
        self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._p.__exit__(*exc)

    def update(self, **delta: int) -> None:
        for k, v in delta.items():
            self.counts[k] += v
        finished = self.counts["done"] + self.counts["failed"]
        self._p.update(self._task, completed=finished, description=self._text())


def run_local(trials: Sequence[Trial], out: Path, *, progress: bool = True) -> list[Outcome]:
    """Run the trials one after another in this process (no Ray needed)."""
    outcomes = []
    with _Progress(len(trials), progress) as bar:
        for trial in trials:
            if trial_state(Path(trial.config["out"])) == "finished":
                outcomes.append(Outcome(trial=trial, status="skipped", state="finished"))
                bar.update(done=1, skipped=1)
                continue
            cfg_path, state = prepare_trial(trial, out)
            bar.update(running=1)
            outcome = _outcome(trial, state, run_trial(str(cfg_path), state == "resume", str(out / "logs" / f"{trial.id}.log")))
            outcomes.append(outcome)
            bar.update(running=-1, **{"done" if outcome.status == "finished" else "failed": 1})
    return outcomes


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError(f"the Ray backend needs Ray: {RAY_HINT} (or run the trials one by one with --backend local)") from None
    return ray


def run_ray(
    trials: Sequence[Trial],
    out: Path,
    *,
    parallel: int | None = None,
    address: str | None = None,
    progress: bool = True,
    ray_init: Mapping[str, Any] | None = None,
) -> list[Outcome]:
    """Run the trials as Ray tasks (one CPU each, at most ``parallel`` at once).

    Without ``address`` a local Ray instance with ``parallel`` CPUs is started (and stopped after);
    with one, the sweep joins that cluster. If Ray is already initialised (e.g. by a test) it is used.
    """
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=parallel or os.cpu_count() or 1, object_store_memory=_LOCAL_OBJECT_STORE)
        kwargs.update(ray_init or {})
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise SweepError(f"could not start or join {where}: {exc}") from exc
        started = True
    try:
        limit = parallel or int(ray.cluster_resources().get("CPU", 1))
        remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
        outcomes: dict[str, Outcome] = {}
        pending: dict[Any, tuple[Trial, str]] = {}
        queue = list(trials)
        with _Progress(len(trials), progress) as bar:
            while queue or pending:
                while queue and len(pending) < limit:
                    trial = queue.pop(0)
                    if trial_state(Path(trial.config["out"])) == "finished":
                        outcomes[trial.id] = Outcome(trial=trial, status="skipped", state="finished")
                        bar.update(done=1, skipped=1)
                        continue
                    cfg_path, state = prepare_trial(trial, out)
                    ref = remote.remote(str(cfg_path), state == "resume", str(out / "logs" / f"{trial.id}.log"))
                    pending[ref] = (trial, state)
                    bar.update(running=1)
                if not pending:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    trial, state = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the Ray task itself died (node lost, worker killed)
                        result = {"rc": -1, "wall_s": 0.0, "error": f"Ray task failed: {type(exc).__name__}: {exc}"[:300]}
                    outcome = _outcome(trial, state, result)
                    outcomes[trial.id] = outcome
                    bar.update(running=-1, **{"done" if outcome.status == "finished" else "failed": 1})
    finally:
        if started:
            ray.shutdown()
    return [outcomes[t.id] for t in trials]


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def choose_backend(backend: str, *, parallel: int | None, address: str | None) -> str:
    """``ray`` or ``local`` for ``--backend auto|ray|local`` (see module doc)."""
    if backend == "local":
        if address:
            raise SweepError("--address joins a Ray cluster; it cannot be combined with --backend local")
        return "local"
    if backend == "ray" or address:
        _import_ray()
        return "ray"
    if parallel == 1:
        return "local"
    if not ray_available():
        print(f"guidedrl sweep: Ray is not installed, so the trials run one at a time; {RAY_HINT} to run them in parallel",
              file=sys.stderr)
        return "local"
    return "ray"


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    backend: str = "auto",
    parallel: int | None = None,
    address: str | None = None,
    progress: bool = True,
    report: bool = True,
    ray_init: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Expand, run (skipping finished trials, resuming killed ones) and report a sweep.

    Writes ``out/sweep.toml`` (the definition), ``out/sweep.json`` (each trial's outcome) and, with
    ``report``, ``out/compare/`` (``guidedrl compare`` over the finished trials). Returns the
    contents of ``sweep.json``.
    """
    import tomli_w

    if parallel is not None and parallel < 1:
        raise SweepError(f"--parallel must be at least 1, got {parallel}")
    out = Path(out).resolve()
    trials = expand(sweep, out)
    chosen = choose_backend(backend, parallel=parallel, address=address)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.toml").write_text(tomli_w.dumps(sweep.to_toml_data()))
    t0 = time.perf_counter()
    if chosen == "ray":
        outcomes = run_ray(trials, out, parallel=parallel, address=address, progress=progress, ray_init=ray_init)
    else:
        outcomes = run_local(trials, out, progress=progress)
    record = {
        "backend": chosen,
        "parallel": parallel,
        "address": address,
        "wall_s": round(time.perf_counter() - t0, 2),
        "counts": {s: sum(o.status == s for o in outcomes) for s in ("finished", "skipped", "failed")},
        "trials": [
            {"id": o.trial.id, "status": o.status, "state": o.state, "seed": o.trial.seed, "settings": o.trial.settings,
             "run_dir": o.trial.config["out"], "rc": o.rc, "wall_s": o.wall_s, "host": o.host, "node": o.node,
             "error": o.error,
             "log": str(out / "logs" / f"{o.trial.id}.log")}
            for o in outcomes
        ],
    }
    from guidedrl.records import atomic_write_json

    atomic_write_json(out / "sweep.json", record)  # before the report, so a failing plot loses nothing
    done = [o.trial.config["out"] for o in outcomes if o.status != "failed"]
    if report and done:
        from guidedrl.compare import compare_runs

        table, png = compare_runs(done, out / "compare")
        record["report"] = {"table": str(table), "curves": str(png)}
        gain = out / "compare" / "gain.png"
        if gain.exists():
            record["report"]["gain"] = str(gain)
        atomic_write_json(out / "sweep.json", record)
    return record


# --- command line ---------------------------------------------------------------------------------


def add_sweep_parser(sub: Any) -> None:
    """Register ``guidedrl sweep`` on the CLI's subparsers (imports nothing heavy)."""
    p = sub.add_parser(
        "sweep",
        help="grid of runs over settings and seeds, in parallel on Ray (local or a cluster)",
        description="Run every combination of --grid values × --seeds (or a sweep TOML's arms, grid and seeds) as "
        "ordinary runs in OUT/runs/, in parallel on Ray; re-running skips finished trials and resumes killed ones.",
    )
    p.add_argument("config", nargs="?", help="run config TOML, or a sweep TOML (a run config with a [sweep] table)")
    p.add_argument("--env", help="environment id")
    p.add_argument("--algo", choices=["ppo", "dqn", "sac"])
    p.add_argument("--steps", type=int, help="training env steps per trial")
    p.add_argument("--methods", help="comma-separated method ids")
    p.add_argument("--llm", help="LLM backend")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a base config value (repeatable)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a setting and its values (repeatable; the trials are every combination)")
    p.add_argument("--seeds", help="seeds, e.g. 0-4 or 0,2,5 (default: the sweep file's, else 0)")
    p.add_argument("--out", required=True, help="sweep directory (runs/, logs/, compare/, sweep.json)")
    p.add_argument("--parallel", type=int, help="trials at once (default: the CPUs of the local machine or cluster)")
    p.add_argument("--address", help="join a Ray cluster: ray://HOST:PORT or auto (default: start a local Ray instance)")
    p.add_argument("--backend", choices=["auto", "ray", "local"], default="auto",
                   help="auto: Ray when installed; local: one trial after another, no Ray")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out with its saved sweep.toml (finished trials are skipped)")
    p.add_argument("--no-report", action="store_true", help="do not write OUT/compare/")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_sweep)


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    saved = Path(args.out) / "sweep.toml"
    if args.config:
        sweep = load_sweep(args.config)
    elif args.resume:
        if not saved.exists():
            raise SweepError(f"--resume: {str(saved)!r} does not exist; give the sweep's config as well")
        sweep = load_sweep(saved)
    else:
        sweep = Sweep(base={})
    base = dict(sweep.base)
    flags = {"env": args.env, "algo": args.algo, "steps": args.steps}
    base.update({k: v for k, v in flags.items() if v is not None})
    if args.methods is not None:
        base["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = list(args.set)
    if args.llm is not None:
        overrides.insert(0, f"llm.backend={json.dumps(args.llm)}")
    base = apply_overrides(base, overrides)
    grid = {**sweep.grid, **parse_grid(args.grid)}
    seeds = parse_seeds(args.seeds) if args.seeds else sweep.seeds
    if not grid and not sweep.arms and len(seeds) == 1:
        print("guidedrl sweep: no --grid and one seed: the sweep is a single run", file=sys.stderr)
    return Sweep(base=base, grid=grid, seeds=seeds, arms=sweep.arms)


def cmd_sweep(args: argparse.Namespace) -> int:
    sweep = sweep_from_args(args)
    record = run_sweep(sweep, args.out, backend=args.backend, parallel=args.parallel, address=args.address,
                       progress=not args.quiet, report=not args.no_report)
    c = record["counts"]
    print(f"\nsweep ({record['backend']}): {c['finished']} finished, {c['skipped']} skipped (finished before), "
          f"{c['failed']} failed, in {record['wall_s']:.0f}s; record: {Path(args.out) / 'sweep.json'}")
    for t in record["trials"]:
        if t["status"] == "failed":
            print(f"  failed: {t['id']}: {t['error']}\n          log: {t['log']}")
    if "report" in record:
        print(Path(record["report"]["table"]).read_text())
        for name, path in record["report"].items():
            print(f"{name}: {path}")
    return 1 if c["failed"] else 0


__all__ = [
    "Arm",
    "Sweep",
    "SweepError",
    "Trial",
    "add_sweep_parser",
    "expand",
    "load_sweep",
    "parse_grid",
    "parse_seeds",
    "run_local",
    "run_ray",
    "run_sweep",
]
