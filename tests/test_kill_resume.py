"""``kill -9`` at random moments, then ``--resume``, until the run finishes: every run ends with the
same figures as the uninterrupted run with the same seed (PPO, DQN, multi-agent).

Every run is ``guidedrl.cli.main(["run", ..., "--out", D])`` / ``main(["run", "--out", D,
"--resume"])`` — what the ``guidedrl`` script runs — in a child process forked from a fork server
that imported guidedrl, torch, Tianshou and TensorBoard once (``guidedrl_kill_warmup``), so a kill
does not pay seconds of imports on a busy machine; ``tests/test_core_resume.py`` kills the script
itself. Each case runs once uninterrupted (the reference), then again with SIGKILLs:

- ``random``: at a random moment after the run's first checkpoint exists;
- ``buffer`` (DQN): the moment a replay-buffer temp file appears (a kill during the buffer write);
- ``final``: after the final checkpoint is written and before the summary is (the child is stepped
  with SIGSTOP/SIGCONT from its final metrics row on, so the kill lands in that short window).

Bounded: at most ``MAX_ATTEMPTS`` launches and ``CASE_SECONDS`` per case.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from guidedrl.records import read_metrics

TIMING = ("wall_s", "train/steps_per_s", "time/online_s")
COMMON = ["--seed", "0", "--quiet", "--no-plot"]
SMALL = ["--set", "train.num_envs=4", "--set", "train.num_test_envs=1", "--set", "train.test_episodes=1",
         "--set", "train.epoch_steps=256"]
CASES = {
    # name: (args, steps, kill plan)
    "ppo": (
        # 16 epochs, one or more eaten by each kill: with the lean collector, 1024 steps ended within
        # one random kill's delay
        ["--env", "CartPole-v1", "--algo", "ppo", "--steps", "4096", *SMALL, "--set", "ppo.steps_per_collect=256",
         "--set", "ppo.repeat=2", "--set", "ppo.batch_size=128"],
        4096,
        ["random"] * 7 + ["final"] * 2,
    ),
    "dqn": (
        # the plain defaults (no preset): this budget's kill plan is sized for 256-step collections of 4 envs
        ["--env", "CartPole-v1", "--algo", "dqn", "--preset", "none", "--steps", "3072", *SMALL,
         "--set", "dqn.start_steps=128",
         "--set", "dqn.buffer_size=20000"],
        3072,
        ["random"] * 4 + ["buffer"] * 3 + ["final"],
    ),
    "multiagent": (
        # long enough that a resumed segment outlasts a random kill's delay (up to 0.3 s): the multi-agent
        # learner on Tianshou runs a 768-step segment in well under a second on a quiet machine
        ["--env", "factory:human-machine-v0", "--steps", "3072", "--set", "env_kwargs.horizon=16",
         "--set", "train.num_envs=2", "--set", "train.num_test_envs=1", "--set", "train.test_episodes=1",
         "--set", "train.epoch_steps=256", "--set", "marl.steps_per_collect=128", "--set", "marl.batch_size=64",
         "--set", "marl.repeat=1"],
        3072,
        ["random"] * 5 + ["final"] * 2,
    ),
}
MAX_ATTEMPTS = 20
CASE_SECONDS = 420


def _figures(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(run_dir)]
    return {
        "status": summary["status"],
        "env_steps": summary["env_steps"],
        "final_return": summary["final_return"],
        "best_return": summary["best_return"],
        "rows": rows,
    }


class _Checkpoint:
    """``env_steps`` of ``run_dir``'s checkpoint, re-read only when the file was replaced."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "checkpoint.pt"
        self.key: tuple[int, int] | None = None
        self.steps: int | None = None

    def __call__(self) -> int | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        if (st.st_ino, st.st_mtime_ns) != self.key:
            try:
                self.steps = int(torch.load(self.path, map_location="cpu", weights_only=True)["env_steps"])
                self.key = (st.st_ino, st.st_mtime_ns)
            except Exception:  # noqa: BLE001 - replaced while reading: ask again
                return None
        return self.steps


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    except (OSError, ValueError, KeyError):
        return False


def _buffer_tmps(run_dir: Path) -> set[str]:
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:  # the first launch has not made it yet
        return set()
    return {n for n in names if n.startswith("buffer.npz.") and n.endswith(".tmp")}


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL


def _step_until(proc, hit, missed, deadline: float) -> bool | None:
    """Run ``proc`` in tiny slices (SIGCONT ... SIGSTOP) until ``hit()`` holds while it is stopped
    (then SIGKILL it: True), ``missed()`` does (let it go on: False), or it ends (None)."""
    while proc.is_alive() and time.monotonic() < deadline:
        os.kill(proc.pid, signal.SIGSTOP)
        if hit():
            _kill(proc)
            return True
        if missed():
            os.kill(proc.pid, signal.SIGCONT)
            return False
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.0003)
    return None


def _row_key(row: dict) -> tuple:
    return (row["env_steps"], row.get("wall_s"), row.get("time/online_s"))


def _wait_and_kill(proc, run_dir: Path, kind: str, steps: int, rng: random.Random, deadline: float) -> str:
    """Kill ``proc`` the way ``kind`` says; returns what happened ("killed <kind>" or "ended").

    Metrics rows present at launch that are newer than the checkpoint are stale (the resumed run
    drops and rewrites them), so only rows not seen at launch count as progress.
    """
    checkpoint = _Checkpoint(run_dir)
    stale = {_row_key(r) for r in read_metrics(run_dir)}
    left_over = _buffer_tmps(run_dir)  # a killed write's temp files: the resumed run removes them

    def _buffer_tmp(run_dir: Path) -> bool:
        return bool(_buffer_tmps(run_dir) - left_over)

    def fresh_row() -> dict | None:
        rows = read_metrics(run_dir)
        return rows[-1] if rows and _row_key(rows[-1]) not in stale else None

    after_row = rng.random() < 0.5  # random kills: half from launch (startup, restore), half from a new row
    delay = rng.uniform(0.0, 0.3)  # shorter than what is left of a run after its first checkpoint
    armed_at = None
    while time.monotonic() < deadline:
        if not proc.is_alive():
            return "ended"
        if kind == "random":
            if armed_at is None and checkpoint() is not None and (not after_row or fresh_row() is not None):
                armed_at = time.monotonic()
                row = fresh_row()
                if row is not None and row["env_steps"] >= steps:
                    delay = 0.0  # the final row: a later kill could come after the run ended
            if armed_at is not None and time.monotonic() - armed_at >= delay:
                _kill(proc)
                return "killed random"
            time.sleep(0.005)
            continue
        if kind == "buffer":
            # kill while the replay buffer's temp file exists: polled, and stepped from each new row on
            # (the row is written just before its checkpoint pair); not the first pair, so that there
            # is a checkpoint to resume from
            if not any((run_dir / f).exists() for f in ("checkpoint.pt", "checkpoint.prev.pt")):
                time.sleep(0.005)
                continue
            if _buffer_tmp(run_dir):
                os.kill(proc.pid, signal.SIGSTOP)
                if _buffer_tmp(run_dir):
                    _kill(proc)
                    return "killed buffer"
                os.kill(proc.pid, signal.SIGCONT)
            row = fresh_row()
            if row is not None and row["env_steps"] != checkpoint():
                stale.add(_row_key(row))
                step = row["env_steps"]
                if _step_until(proc, lambda: _buffer_tmp(run_dir), lambda: checkpoint() == step, deadline):
                    return "killed buffer"
            time.sleep(0.001)
            continue
        # final: from the final row on (or at once when the checkpoint is final: a resume with nothing
        # left to do), step the child until its final checkpoint is in place and no summary is
        row = fresh_row()
        if checkpoint() == steps or (row is not None and row["env_steps"] >= steps):
            hit = _step_until(proc, lambda: checkpoint() == steps and not _finished(run_dir), lambda: _finished(run_dir), deadline)
            if hit:
                return "killed final"
            proc.join(60)
            return "ended"
        time.sleep(0.005)
    proc.kill()
    proc.join(30)
    pytest.fail(f"{kind} kill: the run neither got there nor ended in time")


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["guidedrl.cli", "guidedrl.train", "guidedrl.train.single", "guidedrl.train.marl", "guidedrl_kill_warmup"]
    )
    return ctx


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_random_kills_and_resumes_end_with_the_uninterrupted_figures(forkserver, tmp_path, case):
    from guidedrl.cli import main

    args, steps, plan = CASES[case]
    reference = tmp_path / "reference"
    t0 = time.monotonic()
    proc = forkserver.Process(target=main, args=(["run", *args, *COMMON, "--out", str(reference)],))
    proc.start()
    proc.join(CASE_SECONDS)
    assert proc.exitcode == 0, f"{case}: the reference run failed or hung"
    print(f"{case}: reference {time.monotonic() - t0:.1f}s")
    expected = _figures(reference)
    assert expected["status"] == "finished" and expected["env_steps"] >= steps

    rng = random.Random(f"kill-resume-{case}")
    # buffer-write kills first (the short runs reach their final checkpoint after a few kills), then
    # the random ones in random order, then the ones after the final checkpoint
    randoms = [k for k in plan if k == "random"]
    plan = [k for k in plan if k == "buffer"] + rng.sample(randoms, len(randoms)) + [k for k in plan if k == "final"]
    run_dir = tmp_path / "killed"
    deadline = time.monotonic() + CASE_SECONDS
    outcomes: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        if not plan:
            break
        kind = plan[0]
        if _Checkpoint(run_dir)() == steps:
            kind = "final"  # training is over: the only kill left is before the summary is written
        # a kill between the renames of a checkpoint pair can leave only checkpoint.prev.pt
        first = not any((run_dir / f).exists() for f in ("checkpoint.pt", "checkpoint.prev.pt"))
        argv = ["run", *args, *COMMON, "--out", str(run_dir)] if first else ["run", "--out", str(run_dir), "--resume", *COMMON[2:]]
        if first and run_dir.exists():
            pytest.fail(f"{case}: attempt {attempt} would start over in a directory without a checkpoint")
        proc = forkserver.Process(target=main, args=(argv,))
        proc.start()
        outcome = _wait_and_kill(proc, run_dir, kind, steps, rng, deadline)
        outcomes.append(outcome)
        print(f"{case}: {outcome} at {time.monotonic() - t0:.1f}s (checkpoint {_Checkpoint(run_dir)()})")
        if outcome.startswith("killed"):
            if kind in plan:
                plan.remove(kind)
            else:
                plan.pop(0)
            assert not _finished(run_dir), f"{case}: killed after the summary was written ({outcome})"
        elif _finished(run_dir):
            break  # the run ended before this kill landed: nothing left to kill
    kills = [o for o in outcomes if o.startswith("killed")]
    # the last resume, never killed
    if not _finished(run_dir):
        proc = forkserver.Process(target=main, args=(["run", "--out", str(run_dir), "--resume", *COMMON[2:]],))
        proc.start()
        proc.join(CASE_SECONDS)
        assert not proc.is_alive(), f"{case}: the final resume did not end in time"
    got = _figures(run_dir)
    assert got == expected, f"{case}: after kills {outcomes} the figures differ from the uninterrupted run"
    assert len(kills) >= len(CASES[case][2]) - 1, f"{case}: only {outcomes} ({len(kills)} kills)"
    if case == "dqn":
        assert "killed buffer" in kills, outcomes
    assert "killed final" in kills, outcomes
