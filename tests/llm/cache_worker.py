"""A separate process for the cache tests: ``python cache_worker.py ask CACHE GOAL RANGES [LATENCY_MS]``
asks the simulated backend for actions at the positions of RANGES (``"0:40,100:140"``, goal GOAL)
and prints the summary;
``python cache_worker.py fill CACHE`` writes large answers forever (to be killed)."""

from __future__ import annotations

import json
import sys

import numpy as np
from guidedrl.config import LLMConfig
from guidedrl.llm import LLMClient, ResponseCache
from guidedrl.llm.testing import CorridorAdapter


def ask(cache: str, goal: int, ranges: str, latency_ms: float = 0.0) -> None:
    positions = [p for part in ranges.split(",") for p in range(*map(int, part.split(":")))]
    adapter = CorridorAdapter(length=1000, goal=goal)
    config = LLMConfig(
        cache="readwrite", cache_path=cache, max_concurrency=8, options={"latency_ms": latency_ms}
    )
    with LLMClient.from_config(config, adapter=adapter, run_dir=None) as client:
        obs = np.array([[p, goal] for p in positions], dtype=np.float32)
        actions = client.suggest_actions(obs)
        print(json.dumps({"actions": actions, **client.summary()}))


def fill(cache: str) -> None:
    store = ResponseCache(cache)
    i = 0
    while True:
        store.put(f"key-{i}", json.dumps({"i": i, "pad": "x" * 200_000}), backend="b", model="m", kind="k")
        print(i, flush=True)
        i += 1


if __name__ == "__main__":
    if sys.argv[1] == "ask":
        ask(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
    else:
        fill(sys.argv[2])
