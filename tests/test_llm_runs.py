"""The LLM layer inside real guided runs (ULTRA-RA on CartPole): the cache across identical runs,
and misbehaving LLMs (malformed answers, an endpoint that hangs half the time) that must neither
stop training nor go uncounted."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from guidedrl.config import from_dict
from guidedrl.llm import summarize_log
from guidedrl.train import train

pytestmark = pytest.mark.slow


def guided(out: Path, cache_path: Path, **llm) -> object:
    return from_dict(
        {
            "env": "CartPole-v1",
            "algo": "ppo",
            "steps": 2048,
            "seed": 3,
            "out": str(out),
            "methods": ["ultra"],
            "ultra": {"variant": "ra", "episodes": 3},
            "llm": {"backend": "simulated", "cache_path": str(cache_path), "backoff_s": 0.01, **llm},
            "ppo": {"steps_per_collect": 512, "repeat": 2},
            "train": {"num_envs": 4, "epoch_steps": 1024, "test_episodes": 2, "num_test_envs": 2},
        }
    )


def log_events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "llm_calls.jsonl").read_text().splitlines()]


def test_identical_second_run_is_answered_from_the_cache(tmp_path):
    cache = tmp_path / "cache.sqlite"
    first = train(guided(tmp_path / "one", cache)).summary
    second = train(guided(tmp_path / "two", cache)).summary
    assert first["llm_calls"] > 0 and first["llm_cache_hits"] == 0
    assert second["llm_calls"] == 0, "every question of the identical run should be a cache hit"
    assert second["llm_cache_hits"] == first["llm_questions"] == second["llm_questions"]
    assert second["llm_backend"].startswith("simulated")
    assert second["counters"]["ultra/advised_steps"] == first["counters"]["ultra/advised_steps"] > 0
    assert {e["event"] for e in log_events(tmp_path / "two")} == {"cache_hit"}


def test_malformed_answers_fall_back_and_the_summary_matches_the_log(tmp_path):
    run = train(guided(tmp_path / "run", tmp_path / "c.sqlite", cache="off", options={"invalid_rate": 0.5, "seed": 1}))
    summary = run.summary
    assert summary["status"] == "finished"
    assert summary["llm_invalid"] > 0 and summary["llm_fallbacks"] > 0
    from_log = summarize_log(run.run_dir / "llm_calls.jsonl")
    for key in ("llm_calls", "llm_invalid", "llm_fallbacks", "llm_failures", "llm_cache_hits"):
        assert summary[key] == from_log[key], key
    assert summary["counters"]["ultra/critical_states"] > 0  # guidance still happened


class HalfHangingServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that answers like the CartPole expert, but hangs
    on every other request (longer than the client's timeout)."""

    def __init__(self) -> None:
        self.count = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.count["requests"] += 1
                if outer.count["requests"] % 2 == 0:
                    time.sleep(1.5)
                text = body["messages"][-1]["content"]
                block = json.loads(text.split("```json", 1)[1].split("```", 1)[0])
                answer = self._answer(block)
                data = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps(answer)}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            @staticmethod
            def _answer(block: dict) -> dict:
                from guidedrl_env_classic import CartPoleExpert

                expert = CartPoleExpert()
                kind = block["question"]
                if kind == "action":
                    return {"action": expert.act(block["state"]), "reason": "expert"}
                if kind == "implicit_reward":
                    return {"reward": expert.implicit_reward(block["state"], block["action"]), "reason": "expert"}
                if kind == "critical_states":
                    found = expert.critical_states(block["states"], block["actions"], block["rewards"])
                    return {"critical_states": found[:3]}
                return {}

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_endpoint_that_hangs_half_the_time_never_stops_training(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    server = HalfHangingServer()
    try:
        config = guided(
            tmp_path / "run",
            tmp_path / "c.sqlite",
            backend="openai:expert",
            cache="off",
            timeout_s=0.5,
            transient_retries=0,
            options={"base_url": server.url},
        )
        run = train(config)
    finally:
        server.close()
    summary = run.summary
    assert summary["status"] == "finished" and summary["env_steps"] >= 2048
    assert server.count["requests"] >= 4
    assert summary["llm_failures"] > 0, "the hanging half must time out and be counted"
    assert summary["llm_calls"] > summary["llm_failures"], "the other half must be answered"
    from_log = summarize_log(run.run_dir / "llm_calls.jsonl")
    for key in ("llm_calls", "llm_failures", "llm_fallbacks"):
        assert summary[key] == from_log[key], key
    assert "sk-test" not in (run.run_dir / "llm_calls.jsonl").read_text()
