"""The ``guidedrl`` command: run, sweep, eval, compare, finetune, and list plugins, envs, LLM backends and presets.

Every subcommand imports what it needs inside its function: ``guidedrl --help`` and the listings
must not pay for torch, Tianshou or LLM client libraries (``tests/test_core_cli_fast.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from guidedrl import __version__
from guidedrl.errors import ConfigWarning, GuidedRLError, RunFileWarning


def _cmd_run(args: argparse.Namespace) -> int:
    from guidedrl.config import apply_overrides, from_dict, load, steps_notice
    from guidedrl.train import train

    if args.resume and not args.config and args.out and (Path(args.out) / "config.toml").exists():
        args.config = str(Path(args.out) / "config.toml")  # `--out DIR --resume`: the run's saved config
    data: dict[str, Any] = load(args.config) if args.config else {}
    flags = {
        "env": args.env,
        "algo": args.algo,
        "steps": args.steps,
        "seed": args.seed,
        "out": args.out,
        "preset": args.preset,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.methods is not None:
        data["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    overrides = list(args.set or [])
    if args.llm is not None:
        overrides.insert(0, f"llm.backend={json.dumps(args.llm)}")
    if args.llm_cache is not None:
        overrides.insert(0, f"llm.cache={json.dumps(args.llm_cache)}")
    if args.llm_log is not None:
        overrides.insert(0, f"llm.log={json.dumps(args.llm_log)}")
    if args.resume and args.config and Path(args.config).is_dir() and "out" not in data:
        data["out"] = str(args.config)
    data = apply_overrides(data, overrides)
    config = from_dict(data)
    if "steps" in data and not args.resume:  # the user chose `steps`: say where the run really stops
        notice = steps_notice(config, multi_agent=_multi_agent(config.env))
        if notice:
            warnings.warn(notice, ConfigWarning, stacklevel=1)
    result = train(
        config,
        resume=args.resume,
        progress=not args.quiet,
        overwrite=args.overwrite,
        resume_without_config=args.resume_without_config,
        resume_without_buffer=args.resume_without_buffer,
    )
    s = result.summary
    print(
        f"\nrun finished: best test return {s['best_return']:.1f}, final {s['final_return']:.1f}, "
        f"{s['env_steps']} env steps in {s['wall_s']:.0f}s; LLM: {s['llm_calls']} calls, "
        f"{s['llm_cache_hits']} cache hits, {s['llm_failures']} failures ({s.get('llm_backend')})"
    )
    for line in method_lines(s):
        print(line)
    print(f"results: {result.run_dir}/summary.json   metrics: {result.run_dir}/metrics.jsonl")
    if not args.no_plot:
        from guidedrl.compare import plot_runs

        methods = "+".join(s.get("methods") or []) or "no method"
        png = plot_runs([result.run_dir], result.run_dir / "learning_curve.png", title=f"{s['env']} - {s['algo']} - {methods}")
        print(f"plot:    {png}")
    return 0


def _multi_agent(env_id: str) -> bool:
    """Whether ``env_id``'s registered adapter is multi-agent, read from its class without making it."""
    from guidedrl.registry import ENVS

    entry = ENVS.get(env_id)
    factory = getattr(entry, "factory", None)
    return bool(getattr(factory, "multi_agent", False) or getattr(getattr(factory, "func", None), "multi_agent", False))


def method_lines(summary: dict[str, Any]) -> list[str]:
    """One line per method of a run: what it counted (``summary["method_counters"]``)."""
    lines = []
    for method, counts in (summary.get("method_counters") or {}).items():
        shown = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in counts.items()) or "nothing counted"
        lines.append(f"  {method}: {shown}")
    return lines


def _plugin_rows() -> dict[str, list[dict[str, Any]]]:
    from guidedrl.plugins import cached_listing

    return cached_listing(_load_plugin_rows)


def _load_plugin_rows() -> dict[str, list[dict[str, Any]]]:
    """Import every plugin and list what it registers (slow: methods may import torch)."""
    from guidedrl.plugins import discover, guidance_hooks_of
    from guidedrl.registry import ENVS, LLMS

    methods = []
    for name, info in sorted(discover("methods").items()):
        row: dict[str, Any] = {"id": name, "distribution": info.dist, "version": info.version, "entry_point": info.value}
        try:
            obj = info.load()
            row["hooks"] = guidance_hooks_of(obj)
        except GuidedRLError as exc:
            row["error"] = str(exc)
        methods.append(row)
    envs_info, llms_info = discover("envs"), discover("llms")

    def reg_rows(reg: Any, infos: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for entry in reg:
            src = infos.get(entry.source.split(":", 1)[-1])
            rows.append(
                {
                    "id": entry.id,
                    "summary": entry.summary,
                    "distribution": src.dist if src else "guidedrl",
                    "version": src.version if src else __version__,
                }
            )
        return rows

    return {"methods": methods, "envs": reg_rows(ENVS, envs_info), "llms": reg_rows(LLMS, llms_info)}


def _print_table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*[", ".join(v) if isinstance(v := row.get(c, ""), list) else str(v) for c in cols])
    Console().print(table)


def _cmd_plugins(args: argparse.Namespace) -> int:
    rows = _plugin_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _print_table("methods", rows["methods"], ["id", "distribution", "version", "hooks"])
    _print_table("environments", rows["envs"], ["id", "distribution", "version", "summary"])
    _print_table("LLM backends", rows["llms"], ["id", "distribution", "version", "summary"])
    return 0


def _cmd_list(kind: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        rows = _plugin_rows()[kind]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_table(kind, rows, ["id", "distribution", "version", "summary"])
        return 0

    return run


def _cmd_presets(args: argparse.Namespace) -> int:
    from guidedrl.presets import available

    rows = [
        {"name": p.name, "env": p.env, "algo": p.algo, "origin": p.origin, "description": p.description,
         "source": p.source, "settings": p.settings}
        for p in sorted(available().values(), key=lambda p: (p.env, p.algo, p.name))
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table("presets (`guidedrl run --env ENV --algo ALGO` picks the matching one)", rows,
                     ["name", "env", "algo", "origin", "description"])
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from guidedrl.evaluate import evaluate_run

    result = evaluate_run(args.run_dir, episodes=args.episodes, seed=args.seed, env=args.env)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from guidedrl.compare import compare_runs

    table_path, png_path = compare_runs(args.run_dirs, args.out, threshold=args.threshold)
    print(Path(table_path).read_text())
    print(f"table: {table_path}\nplot:  {png_path}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from guidedrl.llm.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(
        epochs=args.epochs,
        lr=args.lr,
        lora_r=args.lora_r,
        batch_size=args.batch_size,
        max_examples=args.max_examples,
        max_length=args.max_length,
        seed=args.seed,
    )
    finetune(
        args.source, args.model, args.out, config, overwrite=args.overwrite, quiet=args.quiet,
        log=lambda msg: print(msg, flush=True),
    )
    print(f"record: {Path(args.out) / 'finetune.json'}")
    print(f"next run: guidedrl run ... --llm hf --set llm.options.lora={args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guidedrl", description="LLM-guided reinforcement learning over Tianshou.")
    parser.add_argument("--version", action="version", version=f"guidedrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a policy, optionally guided by methods and an LLM")
    run.add_argument("config", nargs="?", help="TOML config file (or a run directory's config.toml)")
    run.add_argument("--env", help="environment id (see `guidedrl envs`)")
    run.add_argument("--algo", choices=["ppo", "dqn", "sac"])
    run.add_argument("--steps", type=int, help="training env steps")
    run.add_argument("--seed", type=int)
    run.add_argument(
        "--preset",
        help="hyper-parameter preset under the config: auto (default: the one for env and algo), none, "
        "or a name from `guidedrl presets`; explicit settings always win",
    )
    run.add_argument("--out", help="the run directory (default runs/<env>__<methods>__<seed>__<time>)")
    run.add_argument("--methods", help="comma-separated method ids, in order of precedence")
    run.add_argument("--llm", help="LLM backend: simulated, openai:MODEL, llamacpp:MODEL or provider:model")
    run.add_argument("--llm-cache", choices=["off", "read", "readwrite"], help="LLM response cache mode")
    run.add_argument("--llm-log", choices=["summary", "full"], help="full: also log prompts and answers")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable), e.g. ppo.lr=3e-4")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    run.add_argument("--overwrite", action="store_true", help="replace the run files already in --out (a new run)")
    run.add_argument(
        "--resume-without-config",
        action="store_true",
        help="--resume a run whose config.toml is lost, with the config given here (recorded in summary.json)",
    )
    run.add_argument(
        "--resume-without-buffer",
        action="store_true",
        help="--resume an off-policy run whose replay buffer is lost, with an empty one (recorded in summary.json)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--no-plot", action="store_true", help="do not write learning_curve.png")
    run.set_defaults(func=_cmd_run)

    plugins = sub.add_parser("plugins", help="installed methods, envs and LLM backends")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(func=_cmd_plugins)
    for kind, help_text in (("envs", "registered environment adapters"), ("llms", "registered LLM backends")):
        p = sub.add_parser(kind, help=help_text)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_cmd_list(kind))

    pre = sub.add_parser("presets", help="hyper-parameter presets per environment and algorithm")
    pre.add_argument("--json", action="store_true", help="also print each preset's settings")
    pre.set_defaults(func=_cmd_presets)

    ev = sub.add_parser("eval", help="evaluate a run's last checkpoint")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--seed", type=int, default=12345)
    ev.add_argument("--env", default=None, help="evaluate on another env id with the same agent interface (zero-shot transfer)")
    ev.set_defaults(func=_cmd_eval)

    cmp_ = sub.add_parser("compare", help="table (mean ± std over seeds) and learning curves of runs")
    cmp_.add_argument("run_dirs", nargs="+")
    cmp_.add_argument("--out", required=True, help="directory for compare.md and curves.png")
    cmp_.add_argument("--threshold", type=float, default=None, help="return threshold for 'env steps to threshold'")
    cmp_.set_defaults(func=_cmd_compare)

    ft = sub.add_parser(
        "finetune",
        help="a LoRA round on a local Hugging Face model from a run's fine-tuning JSONL (extra: guidedrl[finetune])",
        description="Train a LoRA adapter (TRL SFTTrainer + peft) on chat-format JSONL; the next run uses it "
        "through `--llm hf --set llm.options.lora=OUT` (docs/llm.md).",
    )
    ft.add_argument("source", help="a run directory (every *finetune*.jsonl in it) or a chat-format JSONL file")
    ft.add_argument("--model", required=True, help="local Hugging Face model directory (config.json, weights, tokenizer with a chat template)")
    ft.add_argument("--out", required=True, help="directory for the adapter and finetune.json")
    ft.add_argument("--epochs", type=float, default=3.0, help="passes over the examples (default 3)")
    ft.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    ft.add_argument("--lora-r", type=int, default=8, help="LoRA rank (default 8; alpha = 2r)")
    ft.add_argument("--batch-size", type=int, default=4, help="examples per step (default 4)")
    ft.add_argument("--max-examples", type=int, default=None, help="a seeded random sample of at most N examples")
    ft.add_argument("--max-length", type=int, default=2048, help="skip examples longer than N tokens (default 2048)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    ft.add_argument("--quiet", action="store_true", help="no progress bar or training log")
    ft.set_defaults(func=_cmd_finetune)

    from guidedrl.sweep import add_sweep_parser  # light: Ray and the runner load only when a sweep runs

    add_sweep_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    default_show = warnings.showwarning

    def show(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(category, (RunFileWarning, ConfigWarning)):  # one line, no source location: about the user's files
            print(f"guidedrl: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, *rest, **kw)

    warnings.showwarning = show
    try:
        return int(args.func(args))
    except GuidedRLError as exc:
        print(f"guidedrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("guidedrl: interrupted; the run directory keeps everything up to the last checkpoint", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = default_show


if __name__ == "__main__":
    sys.exit(main())
