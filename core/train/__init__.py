"""Running a guided training job: ``train(config)`` builds everything from the config and runs it."""

from __future__ import annotations

import os
import platform
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from guidedrl.config import RunConfig, refuse_secrets
from guidedrl.context import RunContext
from guidedrl.errors import ConfigError, RunFileError, RunFileWarning
from guidedrl.plugins import make_manager
from guidedrl.records import (
    CHECKPOINT,
    PREV_CHECKPOINT,
    RunRecorder,
    default_run_dir,
    llm_log_totals,
    load_run_checkpoint,
    remove_run_files,
    run_files_in,
    sum_segments,
)
from guidedrl.registry import make_adapter

if TYPE_CHECKING:
    from guidedrl.train.learner import Learner


@attrs.frozen
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {spec!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def train(
    config: RunConfig,
    *,
    extra_plugins: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = False,
    overwrite: bool = False,
    resume_without_config: bool = False,
    resume_without_buffer: bool = False,
) -> RunResult:
    """Run one training job and return its run directory and summary.

    ``extra_plugins`` maps names to plugin objects that join the run like named methods (a user's
    own hook module, or a test plugin). With ``resume`` the run continues from the run directory's
    last checkpoint, keeping its metrics up to that point; it refuses a directory without
    ``config.toml`` (unless ``resume_without_config``: ``config`` is used and saved) and an
    off-policy run without its replay buffer (unless ``resume_without_buffer``: it starts empty).
    Both flags are recorded in ``summary.json`` (``segments[i].flags``). Without ``resume`` a
    directory holding another run's files is refused unless ``overwrite`` (which deletes them).
    """
    refuse_secrets(config)  # before anything is written
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    flags: list[str] = []
    if resume:
        saved = run_dir / "config.toml"
        if not ((run_dir / CHECKPOINT).exists() or (run_dir / PREV_CHECKPOINT).exists()):
            raise ConfigError(
                f"--resume: {str(run_dir)!r} has no checkpoint.pt to continue from (killed before its first "
                "epoch ended?); start it again with --overwrite"
            )
        if saved.exists():
            from guidedrl.config import from_dict, load

            saved_cfg = from_dict(load(saved))
            if attrs.evolve(saved_cfg, steps=config.steps, out=config.out) != attrs.evolve(config, out=config.out):
                raise ConfigError(
                    f"--resume: the config differs from the one saved in {saved}; resume with the saved config "
                    f"(`guidedrl run {saved} --resume`) or start a new run directory"
                )
        elif resume_without_config:
            flags.append("--resume-without-config")
        else:
            raise RunFileError(
                f"--resume: {str(run_dir)!r} has no config.toml, so the run's settings (env, algo, methods) are "
                "unknown; put config.toml back, or give the original config file with --resume-without-config "
                "to continue with it (recorded in summary.json)"
            )
    else:
        present = run_files_in(run_dir)
        if present and not overwrite:
            raise ConfigError(
                f"{str(run_dir)!r} already holds a run ({', '.join(present)}); pass --resume to continue it, "
                "--overwrite to replace it, or choose another --out"
            )
    # Everything that can fail on a wrong config fails before the run directory is written.
    if config.train.init_from and not resume:
        load_run_checkpoint(config.train.init_from)  # missing or damaged: refused here, loaded again by the learner
    pm = make_manager(config.methods, config.method_config, extra_plugins=extra_plugins)
    adapter = make_adapter(config.env, **config.env_kwargs)
    from guidedrl.train.algorithms import ALGORITHMS

    algo_spec = ALGORITHMS.get(config.algo)  # after the methods are loaded: one may register an algorithm
    device = resolve_device(config.train.device)
    if overwrite and not resume:
        remove_run_files(run_dir)
        flags.append("--overwrite")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = attrs.evolve(config, out=str(run_dir))
    recorder = RunRecorder(run_dir, keep=config.train.checkpoint_keep)
    recorder.segment["flags"] += flags
    if recorder.stale_tmp_removed:
        recorder.segment["stale_tmp_removed"] = recorder.stale_tmp_removed
        warnings.warn(
            f"{run_dir}: removed {len(recorder.stale_tmp_removed)} temporary file(s) left by an interrupted write "
            f"({', '.join(recorder.stale_tmp_removed[:3])})",
            RunFileWarning,
            stacklevel=2,
        )
    if resume:
        # Checked before config.toml or summary.json is touched: a refused resume changes nothing.
        multi_agent = getattr(adapter, "multi_agent", False)
        try:
            recorder.resume(
                need_buffer=not algo_spec.on_policy and not multi_agent, allow_empty_buffer=resume_without_buffer
            )
        except BaseException:
            recorder.close()
            raise
    config.save(run_dir / "config.toml")
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # Tianshou shuffles minibatches with numpy's global generator
    torch.set_num_threads(config.train.torch_threads)
    ctx = RunContext(config=config, adapter=adapter, pm=pm, run_dir=run_dir, device=device, logger=recorder)
    recorder.segment_info = lambda: _llm_segment(ctx)
    summary: dict[str, Any] = {"status": "running"}
    try:
        from guidedrl.train.loop import run_epochs

        result = run_epochs(ctx, make_learner(ctx), recorder, resume=resume, progress=progress)
        summary = {**result, "status": "finished"}
    except BaseException as exc:
        summary = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "env_steps": ctx.env_steps}
        raise
    finally:
        summary.setdefault("best_return", None)
        summary.setdefault("final_return", None)
        segments = recorder.segments()
        segments[-1].update(status=summary["status"], to_env_steps=int(summary.get("env_steps") or ctx.env_steps))
        summary.update(
            {
                "wall_s": round(sum_segments(segments, "wall_s"), 3),
                "segments": segments,
                "checkpoint_fallbacks": sum(len(s.get("fallbacks", [])) for s in segments),
                "env": config.env,
                "algo": config.algo,
                "methods": list(config.methods),
                "seed": config.seed,
                "device": str(device),
                "counters": dict(ctx.counters),
                "method_counters": ctx.method_counters(),
                "host": platform.node(),
                "pid": os.getpid(),
            }
        )
        summary.update(_llm_summary(ctx, segments))
        try:
            recorder.write_summary(summary)
        except RunFileError as exc:
            if summary["status"] == "finished":
                raise
            warnings.warn(str(exc), RunFileWarning, stacklevel=2)  # keep the error that ended the run
        finally:
            if ctx.llm_started:
                ctx.llm.close()
            recorder.close()
    return RunResult(run_dir=run_dir, summary=summary)


def make_learner(ctx: RunContext) -> Learner:
    """The learner behind the epoch loop: the multi-agent learner for a multi-agent adapter, else the
    Tianshou algorithm ``config.algo`` names."""
    if getattr(ctx.adapter, "multi_agent", False):
        from guidedrl.train.multiagent import MultiAgentLearner

        return MultiAgentLearner(ctx)
    from guidedrl.train.single import TianshouLearner

    return TianshouLearner(ctx)


def _llm_segment(ctx: RunContext) -> dict[str, Any]:
    """What a segment (one start or resume) adds to the LLM totals that the call log cannot recompute."""
    if not ctx.llm_started:
        return {"llm_backend": None, "llm_wall_s": 0.0, "llm_questions": 0}
    s = ctx.llm.summary()
    return {"llm_backend": s["llm_backend"], "llm_wall_s": s.get("llm_wall_s", 0.0), "llm_questions": s.get("llm_questions", 0)}


def _llm_summary(ctx: RunContext, segments: list[dict[str, Any]]) -> dict[str, Any]:
    """LLM totals over every segment of the run: the counters recomputed from ``llm_calls.jsonl``
    (which every segment appends to), wall time and questions summed over the segments."""
    out: dict[str, Any] = dict(ctx.llm.summary()) if ctx.llm_started else {}
    totals = llm_log_totals(ctx.run_dir)
    logged_backend = totals.pop("llm_backend_logged", None)
    out.update(totals)
    out["llm_wall_s"] = round(sum_segments(segments, "llm_wall_s"), 4)
    out["llm_questions"] = int(sum_segments(segments, "llm_questions"))
    backends = [s["llm_backend"] for s in segments if s.get("llm_backend")]
    out["llm_backend"] = (backends[-1] if backends else logged_backend) or "none (no method asked)"
    return out


__all__ = ["RunResult", "make_learner", "resolve_device", "train"]
