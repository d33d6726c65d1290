"""Benchmark of the LLM layer's own costs (no real model): prints a table with targets.

    python benchmarks/llm_layer.py [--calls 200] [--latency-ms 50] [--concurrency 8]

- cache hit: a repeated ``suggest_action`` answered from the SQLite cache, end to end (target <= 1 ms median);
- concurrency: ``--calls`` questions to the ``simulated`` backend with ``--latency-ms`` each, asked
  as one batch at ``--concurrency`` vs one by one (target >= 6x faster);
- overheads per call: prompt rendering, parse + validate, and a whole question with a 0 ms backend.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from guidedrl.config import LLMConfig
from guidedrl.llm import LLMClient
from guidedrl.llm.testing import CorridorAdapter


def median_s(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def client(tmp: Path, **cfg: object) -> LLMClient:
    adapter = CorridorAdapter(length=100_000, goal=50_000)
    cfg.setdefault("cache", "off")
    return LLMClient.from_config(
        LLMConfig(backend="simulated", cache_path=str(tmp / "cache.sqlite"), **cfg),
        adapter=adapter,
        run_dir=tmp / "run",
    )


def obs(p: int) -> np.ndarray:
    return np.array([p, 50_000.0], dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, bool | None]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)

        with client(tmp, cache="readwrite") as c:
            c.suggest_action(obs(1))
            hit = median_s(lambda: c.suggest_action(obs(1)), 500)
            lookup = median_s(lambda: c.cache.get("no-such-key"), 2000)
            assert c.summary()["llm_cache_hits"] >= 500
        rows.append(
            ("cache hit, whole suggest_action (median)", f"{hit * 1e3:.3f} ms", "<= 1 ms", hit <= 1e-3)
        )
        rows.append(("  of which SQLite lookup (median)", f"{lookup * 1e6:.1f} us", "", None))

        batch = np.stack([obs(p) for p in range(args.calls)])
        options = {"latency_ms": args.latency_ms}
        with client(tmp / "seq", options=options, max_concurrency=args.concurrency) as c:
            started = time.perf_counter()
            sequential = [c.suggest_action(o) for o in batch]
            seq_s = time.perf_counter() - started
        with client(tmp / "conc", options=options, max_concurrency=args.concurrency) as c:
            started = time.perf_counter()
            concurrent = c.suggest_actions(batch)
            conc_s = time.perf_counter() - started
        assert sequential == concurrent == [2] * args.calls
        speedup = seq_s / conc_s
        rows.append((f"{args.calls} calls at {args.latency_ms:g} ms, sequential", f"{seq_s:.2f} s", "", None))
        rows.append(
            (
                f"{args.calls} calls at {args.latency_ms:g} ms, concurrency {args.concurrency}",
                f"{conc_s:.2f} s",
                "",
                None,
            )
        )
        rows.append(("  speed-up", f"{speedup:.1f}x", ">= 6x", speedup >= 6.0))

        with client(tmp / "overhead") as c:
            question = c.action_question(obs(3))
            prepared = c._prepare(question)
            raw = '{"action": 2, "reason": "the goal is to the right"}'
            render = median_s(lambda: c._prepare(question), 500)
            validate = median_s(lambda: c._validate(prepared, raw), 2000)
            whole = median_s(lambda: c.suggest_action(obs(4)), 300)
        rows.append(("prompt rendering per question (median)", f"{render * 1e6:.0f} us", "", None))
        rows.append(("parse + validate per answer (median)", f"{validate * 1e6:.0f} us", "", None))
        rows.append(("whole question, 0 ms backend (median)", f"{whole * 1e3:.2f} ms", "", None))

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  {'target':>8}  ok")
    print("-" * (width + 28))
    for label, value, target, ok in rows:
        print(f"{label:<{width}}  {value:>10}  {target:>8}  {'' if ok is None else ('yes' if ok else 'NO')}")


if __name__ == "__main__":
    main()
