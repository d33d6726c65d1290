"""Sweeps: parsing and expanding a grid, choosing a backend, the compare report a sweep writes, and
a real 2×2 sweep on the local (no-Ray) backend: run directories, skip-finished, resume, a failing trial.

The same sweep on a local Ray instance, the LLM cache under parallel trials and Ray vector envs are
in ``test_sweep_ray.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from guidedrl.cli import main
from guidedrl.records import read_metrics
from guidedrl.sweep import (
    RAY_HINT,
    Sweep,
    SweepError,
    choose_backend,
    expand,
    load_sweep,
    parse_grid,
    parse_seeds,
    run_sweep,
)

PNG = b"\x89PNG\r\n\x1a\n"

TINY = {
    "env": "CartPole-v1",
    "algo": "ppo",
    "steps": 512,
    "ppo": {"steps_per_collect": 256, "repeat": 1, "batch_size": 128},
    "train": {"num_envs": 2, "epoch_steps": 256, "test_episodes": 2, "num_test_envs": 2},
}


def tiny_2x2() -> Sweep:
    return Sweep(base=TINY, grid={"ppo.lr": [1e-3, 3e-4]}, seeds=(0, 1))


# --- definition ---------------------------------------------------------------------------------


def test_seeds_accept_ranges_lists_and_single_values():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("0,2,5") == (0, 2, 5)
    assert parse_seeds("1-2,7") == (1, 2, 7)
    assert parse_seeds("3") == (3,)
    assert parse_seeds([4, 5]) == (4, 5)
    for bad in ("a-b", "4-1", "1,1", "-3"):
        with pytest.raises(SweepError):
            parse_seeds(bad)


def test_grid_values_are_toml_literals_split_outside_brackets():
    grid = parse_grid(["ppo.lr=1e-3,3e-4", 'methods=[],["ultra"]', "ultra.variant=ra,a", "ppo.hidden=[64, 64],[32]"])
    assert grid == {
        "ppo.lr": [1e-3, 3e-4],
        "methods": [[], ["ultra"]],
        "ultra.variant": ["ra", "a"],
        "ppo.hidden": [[64, 64], [32]],
    }
    for bad in (["ppo.lr"], ["=1,2"], ["ppo.lr="], ["ppo.lr=1", "ppo.lr=2"]):
        with pytest.raises(SweepError, match="--grid"):
            parse_grid(bad)


def test_expand_crosses_arms_grid_and_seeds_and_drops_tables_of_methods_an_arm_does_not_run(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        """
env = "CartPole-v1"
steps = 1024
methods = ["ultra"]
[ultra]
variant = "ra"
[sweep]
seeds = "0-2"
grid = { "ppo.lr" = [1e-3, 3e-4] }
[[sweep.arms]]
name = "plain"
set = { methods = [] }
[[sweep.arms]]
name = "ultra"
grid = { "llm.options.error_rate" = [0.0, 0.5] }
[sweep.arms.set.ultra]
episodes = 3
"""
    )
    sweep = load_sweep(path)
    trials = expand(sweep, tmp_path / "out")
    assert len(trials) == (2 + 2 * 2) * 3
    plain = [t for t in trials if t.id.startswith("plain")]
    ultra = [t for t in trials if t.id.startswith("ultra")]
    assert len(plain) == 6 and len(ultra) == 12
    assert {t.id for t in plain} >= {"plain__lr=0.001__seed0", "plain__lr=0.0003__seed2"}
    assert "ultra__lr=0.001__error_rate=0.5__seed1" in {t.id for t in ultra}
    p = plain[0].config
    assert p["methods"] == [] and "ultra" not in p and "llm" not in p
    u = next(t for t in ultra if t.id == "ultra__lr=0.001__error_rate=0.5__seed1")
    assert u.config["ultra"] == {"variant": "ra", "episodes": 3}  # the arm's table merges into the base's
    assert u.config["llm"]["options"]["error_rate"] == 0.5 and u.config["seed"] == 1 and u.config["ppo"]["lr"] == 1e-3
    assert u.config["out"] == str((tmp_path / "out" / "runs" / u.id).resolve())
    assert u.settings == {"ultra.episodes": 3, "ppo.lr": 1e-3, "llm.options.error_rate": 0.5}


def test_a_trial_with_an_invalid_setting_fails_before_anything_runs(tmp_path):
    with pytest.raises(SweepError, match=r"trial lr=-1__seed0: .*ppo"):
        expand(Sweep(base=TINY, grid={"ppo.lr": [-1]}), tmp_path)
    with pytest.raises(SweepError, match="unknown setting"):
        expand(Sweep(base=TINY, grid={"ppo.lrr": [1]}), tmp_path)
    assert not (tmp_path / "runs").exists()


def test_sweep_file_errors_name_the_fix(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sweep]\nseeds = "0-1"\ngird = { "ppo.lr" = [1] }\n')
    with pytest.raises(SweepError, match="unknown .sweep. setting.*gird.*valid: seeds, grid, arms"):
        load_sweep(bad)
    bad.write_text('[sweep]\ngrid = { "ppo.lr" = 1e-3 }\n')
    with pytest.raises(SweepError, match="non-empty list"):
        load_sweep(bad)


def test_cli_sweep_mistakes_are_one_sentence(tmp_path, capsys):
    assert main(["sweep", "--env", "CartPole-v1", "--grid", "ppo.lr", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("guidedrl: error: --grid expects key=v1,v2") and "Traceback" not in err
    assert main(["sweep", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "sweep.toml" in capsys.readouterr().err


def test_without_ray_the_ray_backend_names_the_extra_and_auto_falls_back(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setattr("guidedrl.sweep.ray_available", lambda: False)
    with pytest.raises(SweepError, match=r"needs Ray: pip install 'guidedrl\[ray\]'"):
        choose_backend("ray", parallel=2, address=None)
    with pytest.raises(SweepError, match=r"guidedrl\[ray\]"):
        choose_backend("auto", parallel=None, address="ray://head:10001")
    assert choose_backend("auto", parallel=4, address=None) == "local"
    assert RAY_HINT in capsys.readouterr().err
    assert choose_backend("local", parallel=4, address=None) == "local"
    with pytest.raises(SweepError, match="--address"):
        choose_backend("local", parallel=None, address="auto")


def test_parallel_one_runs_locally_without_asking_for_ray():
    assert choose_backend("auto", parallel=1, address=None) == "local"


# --- the compare report of a sweep (hand-written run directories: no training) -----------------------


def fake_run(root: Path, name: str, config: dict, final: float, curve: list[float]) -> Path:
    import tomli_w

    d = root / name
    d.mkdir(parents=True)
    (d / "config.toml").write_text(tomli_w.dumps(config))
    (d / "summary.json").write_text(json.dumps({"status": "finished", "final_return": final, "best_return": max(curve),
                                                "env_steps": 100 * len(curve), "wall_s": 1.0, "llm_calls": 0}))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"env_steps": 100 * (i + 1), "test/return": r}) + "\n"
                                             for i, r in enumerate(curve)))
    return d


def error_rate_runs(root: Path) -> list[Path]:
    """No-method arm (final 100 ± 0) and ULTRA at error rates 0, 0.2, 0.4 (gains +50, +10, -30 %)."""
    dirs = []
    base = {"env": "factory:none", "steps": 1000}
    for seed, final in ((0, 90.0), (1, 110.0)):
        dirs.append(fake_run(root, f"plain{seed}", {**base, "seed": seed, "methods": [], "ppo": {"lr": 1e-3}},
                             final, [10, final]))
    for rate, gain in ((0.0, 50.0), (0.2, 10.0), (0.4, -30.0)):
        for seed, jitter in ((0, -5.0), (1, 5.0)):
            final = 100 + gain + jitter
            cfg = {**base, "seed": seed, "methods": ["ultra"], "ultra": {"variant": "ra", "episodes": 3},
                   "llm": {"options": {"error_rate": rate}}, "ppo": {"lr": 3e-4}}
            dirs.append(fake_run(root, f"ultra{rate}_{seed}", cfg, final, [20, final]))
    return dirs


def test_compare_labels_groups_by_the_fewest_settings_that_differ_and_plots_gain_with_the_break_even(tmp_path):
    from guidedrl.compare import compare_runs, gain_vs_setting, describe_groups, load_run

    dirs = error_rate_runs(tmp_path / "runs")
    table_path, png = compare_runs(dirs, tmp_path / "cmp")
    text = table_path.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln]
    labels = [r.split("|")[1].strip() for r in rows[1:5]]
    assert labels == ["no method", "ultra, error_rate=0", "ultra, error_rate=0.2", "ultra, error_rate=0.4"]
    assert "| no method | 2 | 100.0 ± 10.0 |" in text
    # settings that differ but are not needed to tell the groups apart are listed once, not in every label
    assert "Other settings that differ between the groups:" in text
    assert "| run | llm.options.error_rate | ppo.lr | ultra.episodes | ultra.variant |" not in text  # error_rate is shown
    assert "| no method | 0.001 |" in text and "| ultra, error_rate=0 | 0.0003 |" in text
    # a method's own settings, the same in every group that runs it, are not "differences" from the plain arm
    assert "ultra.episodes" not in text and "ultra.variant" not in text
    gain = gain_vs_setting(describe_groups([load_run(d) for d in dirs]))
    line = gain["lines"]["ultra"]
    assert gain["setting"] == "llm.options.error_rate"
    assert line["x"] == [0.0, 0.2, 0.4] and line["mean"] == pytest.approx([50.0, 10.0, -30.0])
    assert line["std"] == pytest.approx([5.0, 5.0, 5.0])
    assert line["breakeven"] == pytest.approx(0.25)  # +10 % at 0.2, -30 % at 0.4: zero a quarter of the way
    assert "guidance stops paying at llm.options.error_rate ≈ 0.25" in text
    assert "| ultra | 0.2 | +10.0 ± 5.0 | 2 | 100.0 |" in text
    assert png.read_bytes()[:8] == PNG and (tmp_path / "cmp" / "gain.png").read_bytes()[:8] == PNG


def test_a_setting_that_is_each_runs_seed_again_does_not_split_groups(tmp_path):
    """A sweep's ``llm.options.seed = "{seed}"`` differs between the seeds of one arm: it must not
    make every seed a group of its own (the LCIL error-rate sweep's report had 18 one-run groups)."""
    from guidedrl.compare import compare_runs
    import tomli_w
    import tomllib

    dirs = error_rate_runs(tmp_path / "runs")
    for d in dirs:
        cfg = tomllib.loads((d / "config.toml").read_text())
        cfg.setdefault("llm", {}).setdefault("options", {})["seed"] = cfg["seed"]
        (d / "config.toml").write_text(tomli_w.dumps(cfg))
    text = compare_runs(dirs, tmp_path / "cmp")[0].read_text()
    assert "| no method | 2 | 100.0 ± 10.0 |" in text and "| ultra, error_rate=0.2 | 2 |" in text
    assert "seed=" not in text and (tmp_path / "cmp" / "gain.png").exists()


def test_no_gain_plot_without_a_no_method_group_or_with_two_numeric_settings(tmp_path):
    from guidedrl.compare import compare_runs

    all_dirs = error_rate_runs(tmp_path / "runs")
    compare_runs(all_dirs, tmp_path / "cmp")
    assert (tmp_path / "cmp" / "gain.png").exists()
    dirs = [d for d in all_dirs if "plain" not in d.name]
    compare_runs(dirs, tmp_path / "cmp")  # the same directory: the earlier gain.png must go
    assert not (tmp_path / "cmp" / "gain.png").exists()
    assert "stops paying" not in (tmp_path / "cmp" / "compare.md").read_text()

    two = tmp_path / "two"
    base = {"env": "x", "steps": 100, "seed": 0}
    runs = [fake_run(two, "plain", {**base, "methods": []}, 100.0, [100.0])]
    for i, (rate, lr) in enumerate(((0.0, 1e-3), (0.2, 1e-3), (0.0, 3e-4))):
        cfg = {**base, "methods": ["ultra"], "llm": {"options": {"error_rate": rate}}, "ppo": {"lr": lr}}
        runs.append(fake_run(two, f"u{i}", cfg, 120.0, [120.0]))
    compare_runs(runs, tmp_path / "cmp2")
    text = (tmp_path / "cmp2" / "compare.md").read_text()
    assert "| ultra, lr=0.0003, error_rate=0 |" in text  # both settings are needed to tell the groups apart
    assert not (tmp_path / "cmp2" / "gain.png").exists() and "stops paying" not in text


def test_the_legend_sits_outside_the_axes(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guidedrl.compare import compare_runs

    seen = []
    real_savefig = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        fig.canvas.draw()
        ax = fig.axes[0]
        seen.append((ax.get_legend().get_window_extent(), ax.get_window_extent()))
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    compare_runs(error_rate_runs(tmp_path / "runs"), tmp_path / "cmp")
    assert len(seen) == 2  # gain.png and curves.png
    for legend, axes in seen:
        assert legend.x0 >= axes.x1, "the legend must not cover the curves"
    plt.close("all")


# --- a real 2×2 sweep without Ray -------------------------------------------------------------------


def check_2x2(out: Path, record: dict) -> None:
    """What every 2×2 sweep of ``tiny_2x2`` leaves behind (used by the Ray test too)."""
    ids = {"lr=0.001__seed0", "lr=0.001__seed1", "lr=0.0003__seed0", "lr=0.0003__seed1"}
    assert record["counts"] == {"finished": 4, "skipped": 0, "failed": 0}, record
    assert {t["id"] for t in record["trials"]} == ids
    for trial_id in ids:
        run = out / "runs" / trial_id
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["env_steps"] >= 512
        assert (run / "checkpoint.pt").exists() and (run / "metrics.jsonl").exists()
        assert (out / "logs" / f"{trial_id}.log").exists()
    assert json.loads((out / "sweep.json").read_text())["counts"] == record["counts"]
    assert load_sweep(out / "sweep.toml").grid == {"ppo.lr": [1e-3, 3e-4]}
    table = (out / "compare" / "compare.md").read_text()
    assert "| no method, lr=0.0003 | 2 |" in table and "| no method, lr=0.001 | 2 |" in table
    assert (out / "compare" / "curves.png").read_bytes()[:8] == PNG


def kill_after_first_epoch(out: Path, trial_id: str) -> Path:
    """Leave ``trial_id`` as a killed sweep leaves a trial: a checkpoint after its first epoch
    (256 of 512 steps), metrics up to there, no finished summary."""
    from guidedrl.config import from_dict, load
    from guidedrl.train import train

    run_dir = out / "runs" / trial_id
    shutil.rmtree(run_dir)
    data = load(out / "trials" / f"{trial_id}.toml")
    train(from_dict({**data, "steps": 256}))  # a shorter budget is allowed on resume
    (run_dir / "summary.json").unlink()
    return run_dir


def check_rerun_skips_finished_and_resumes_killed(out: Path, rerun) -> None:
    killed = kill_after_first_epoch(out, "lr=0.001__seed1")
    mtimes = {p: (p / "summary.json").stat().st_mtime_ns for p in (out / "runs").iterdir() if p != killed}
    record = rerun()
    by_id = {t["id"]: t for t in record["trials"]}
    assert record["counts"] == {"finished": 1, "skipped": 3, "failed": 0}, record
    assert by_id["lr=0.001__seed1"]["state"] == "resume" and by_id["lr=0.001__seed1"]["status"] == "finished"
    assert "--resume" in (out / "logs" / "lr=0.001__seed1.log").read_text()
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["env_steps"] == 512
    assert [r["env_steps"] for r in read_metrics(killed)] == [256, 512], "the resumed run continues after its checkpoint"
    assert all((p / "summary.json").stat().st_mtime_ns == t for p, t in mtimes.items()), "finished runs must not rerun"


@pytest.mark.slow
def test_2x2_sweep_on_the_local_backend_skips_finished_and_resumes_killed_trials(tmp_path):
    out = tmp_path / "sweep"
    record = run_sweep(tiny_2x2(), out, backend="local", progress=False)
    assert record["backend"] == "local"
    check_2x2(out, record)

    def rerun_from_the_saved_definition() -> dict:
        assert main(["sweep", "--out", str(out), "--resume", "--backend", "local", "--quiet"]) == 0
        return json.loads((out / "sweep.json").read_text())

    check_rerun_skips_finished_and_resumes_killed(out, rerun_from_the_saved_definition)


@pytest.mark.slow
def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--env", "CartPole-v1", "--steps", "256", "--set", "ppo.steps_per_collect=256",
                 "--set", "train.epoch_steps=256", "--set", "train.num_envs=2", "--set", "train.test_episodes=1",
                 "--set", "train.num_test_envs=1", "--grid", f'train.init_from="",{json.dumps(str(tmp_path / "nowhere"))}',
                 "--backend", "local", "--quiet", "--out", str(out)])
    captured = capsys.readouterr().out
    assert code == 1
    record = json.loads((out / "sweep.json").read_text())
    assert record["counts"] == {"finished": 1, "skipped": 0, "failed": 1}
    failed = next(t for t in record["trials"] if t["status"] == "failed")
    assert "does not exist" in failed["error"] and failed["rc"] == 2
    assert f"failed: {failed['id']}" in captured and failed["log"] in captured
    assert "1 finished, 0 skipped (finished before), 1 failed" in captured


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "benchmarks").glob("*.toml")), ids=lambda p: p.name)
def test_every_benchmark_sweep_expands_into_valid_runs(path, tmp_path):
    trials = expand(load_sweep(path), tmp_path / "out")
    assert trials and len({t.id for t in trials}) == len(trials)
    for t in trials:
        assert "{seed}" not in json.dumps(t.config) and "{sweep}" not in json.dumps(t.config)


@pytest.mark.parametrize(("stage", "source"), [("lcil_transfer.toml", "lcil.toml"),
                                               ("ultra_pong_error_rate.toml", "ultra_pong_pretrain.toml")])
def test_a_second_stage_sweep_starts_from_runs_its_first_stage_makes(stage, source, tmp_path):
    """``train.init_from = "{sweep}/../<dir>/runs/<trial>"`` must name a trial the first sweep really
    writes (a renamed arm or grid key would otherwise fail only after the first stage's hours)."""
    bench = Path(__file__).parents[1] / "benchmarks"
    made = {t.id for t in expand(load_sweep(bench / source), tmp_path / "first")}
    wanted = {Path(t.config["train"]["init_from"]) for t in expand(load_sweep(bench / stage), tmp_path / "second")}
    assert {w.parent.name for w in wanted} == {"runs"}, wanted
    assert {w.name for w in wanted} <= made, sorted({w.name for w in wanted} - made)
