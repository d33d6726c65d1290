"""Running a guided training job: ``train(config)`` builds everything from the config and runs it."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from guidedrl.config import RunConfig
from guidedrl.context import RunContext
from guidedrl.errors import ConfigError
from guidedrl.plugins import make_manager
from guidedrl.records import RunRecorder, default_run_dir
from guidedrl.registry import make_adapter


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
) -> RunResult:
    """Run one training job and return its run directory and summary.

    ``extra_plugins`` maps names to plugin objects that join the run like named methods (a user's
    own hook module, or a test plugin). With ``resume`` the run continues from the run directory's
    last checkpoint, keeping its metrics up to that point.
    """
    run_dir = Path(config.out) if config.out else default_run_dir(config)
    if resume:
        saved = run_dir / "config.toml"
        if not (run_dir / "checkpoint.pt").exists():
            raise ConfigError(f"--resume: {str(run_dir)!r} has no checkpoint.pt to continue from")
        if saved.exists():
            from guidedrl.config import from_dict, load

            saved_cfg = from_dict(load(saved))
            if attrs.evolve(saved_cfg, steps=config.steps, out=config.out) != attrs.evolve(config, out=config.out):
                raise ConfigError(
                    f"--resume: the config differs from the one saved in {saved}; resume with the saved config "
                    f"(`guidedrl run {saved} --resume`) or start a new run directory"
                )
    elif (run_dir / "checkpoint.pt").exists():
        raise ConfigError(
            f"{str(run_dir)!r} already holds a run; pass --resume to continue it or choose another --out"
        )
    # Everything that can fail on a wrong config fails before the run directory is written.
    pm = make_manager(config.methods, config.method_config, extra_plugins=extra_plugins)
    adapter = make_adapter(config.env, **config.env_kwargs)
    device = resolve_device(config.train.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = attrs.evolve(config, out=str(run_dir))
    config.save(run_dir / "config.toml")
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)  # Tianshou shuffles minibatches with numpy's global generator
    torch.set_num_threads(config.train.torch_threads)
    recorder = RunRecorder(run_dir)
    if resume:
        _truncate_metrics_after_checkpoint(recorder)
    ctx = RunContext(config=config, adapter=adapter, pm=pm, run_dir=run_dir, device=device, logger=recorder)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"status": "running"}
    try:
        if getattr(adapter, "multi_agent", False):
            from guidedrl.runner.multiagent import train_multiagent

            result = train_multiagent(ctx, recorder, resume=resume, progress=progress)
        else:
            from guidedrl.runner.single import train_single

            result = train_single(ctx, recorder, resume=resume, progress=progress)
        summary = {**result, "status": "finished"}
    except BaseException as exc:
        summary = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "env_steps": ctx.env_steps}
        raise
    finally:
        summary.setdefault("best_return", None)
        summary.setdefault("final_return", None)
        summary.update(
            {
                "wall_s": round(time.perf_counter() - t0, 3),
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
        summary.update(_llm_summary(ctx))
        recorder.write_summary(summary)
        if ctx.llm_started:
            ctx.llm.close()
        recorder.close()
    return RunResult(run_dir=run_dir, summary=summary)


def _llm_summary(ctx: RunContext) -> dict[str, Any]:
    base = {"llm_calls": 0, "llm_cache_hits": 0, "llm_failures": 0, "llm_backend": None}
    if ctx.llm_started:
        base.update(ctx.llm.summary())
    else:
        base["llm_backend"] = "none (no method asked)"
    return base


def _truncate_metrics_after_checkpoint(recorder: RunRecorder) -> None:
    """Drop metric rows newer than the checkpoint, so a resumed run does not log them twice."""
    checkpoint = recorder.load_checkpoint()
    if checkpoint is not None:
        recorder.truncate_metrics(after_step=int(checkpoint["env_steps"]))


__all__ = ["RunResult", "resolve_device", "train"]
