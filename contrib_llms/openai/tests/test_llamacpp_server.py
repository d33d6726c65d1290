"""A real local OpenAI-compatible server: ``python -m llama_cpp.server`` with the packaged gemma3-270m on
127.0.0.1, and a short guided run (ULTRA-RA on CartPole) through the openai backend.

Opt-in (it starts a server and runs a model on the CPU for a few minutes): ``GUIDEDRL_REAL_SERVER=1``.
Skipped with the reason when llama-cpp-python's ``server`` extra is missing
(``pip install 'guidedrl-llm-llamacpp[server]'``). Prints answers received, invalid rate and seconds
per call.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("GUIDEDRL_REAL_SERVER") != "1",
        reason="opt-in: set GUIDEDRL_REAL_SERVER=1 to start llama_cpp.server with gemma3-270m",
    ),
]

N_CTX = 2048  # llama_cpp.server's default context, which ULTRA's longest prompts exceed unless fitted
#: The context guidedrl fits prompts to: below the server's, so that prompts stay short (a CPU
#: evaluates prompt tokens slowly: a 1,800-token chunk takes minutes on a busy 2-core machine).
CONTEXT = int(os.environ.get("GUIDEDRL_REAL_SERVER_CONTEXT", "1024"))
MAX_CALLS = int(os.environ.get("GUIDEDRL_REAL_SERVER_CALLS", "10"))
#: One thread: on a busy machine two llama.cpp threads wait on each other (1,213 prompt tokens took
#: 49 s with two threads, 19 s with one, on the shared 2-core development machine).
THREADS = os.environ.get("GUIDEDRL_REAL_SERVER_THREADS", "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip(
        "llama_cpp.server.app", reason="llama-cpp-python's server extra is missing: pip install 'guidedrl-llm-llamacpp[server]'"
    )
    from guidedrl_llm_llamacpp import resolve_model

    cache = getattr(request.config, "cache", None)
    where = Path(cache.mkdir("guidedrl-llamacpp-models")) if cache else tmp_path_factory.mktemp("models")
    old = os.environ.get("GUIDEDRL_CACHE_DIR")
    os.environ["GUIDEDRL_CACHE_DIR"] = str(where)
    try:
        model = resolve_model("gemma3-270m")
    finally:
        if old is None:
            os.environ.pop("GUIDEDRL_CACHE_DIR")
        else:
            os.environ["GUIDEDRL_CACHE_DIR"] = old
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "gemma3-270m",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", THREADS, "--n_threads_batch", THREADS,
             "--logits_all", "false"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        import httpx

        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start in 180 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.timeout(1200)
def test_a_guided_run_through_llama_cpp_server_gets_answers(llama_server, tmp_path, monkeypatch, capsys):
    from guidedrl.config import from_dict
    from guidedrl.llm import summarize_log
    from guidedrl.train import train

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(tmp_path / "cache"))
    config = from_dict(
        {
            "env": "CartPole-v1",
            "algo": "ppo",
            "steps": 1024,
            "seed": 0,
            "out": str(tmp_path / "run"),
            "methods": ["ultra"],
            "ultra": {"variant": "ra", "episodes": 1, "max_states": 2, "rate_executed": False},
            "llm": {
                "backend": "openai:gemma3-270m",
                "options": {"base_url": llama_server, "max_tokens": 64, "stream": True},
                "context_tokens": CONTEXT,
                "timeout_s": 300.0,
                "transient_retries": 1,
                "max_calls": MAX_CALLS,
                "max_concurrency": 1,
                "cache": "off",
                "log": "full",
            },
            "ppo": {"steps_per_collect": 512, "repeat": 1},
            "train": {"num_envs": 2, "epoch_steps": 512, "test_episodes": 1, "num_test_envs": 1},
        }
    )
    run = train(config)
    summary = run.summary
    lines = [json.loads(x) for x in (run.run_dir / "llm_calls.jsonl").read_text(encoding="utf-8").splitlines()]
    calls = [x for x in lines if x["event"] == "call"]
    answered = [x for x in calls if x["valid"] is not None]  # the server sent text back
    invalid = [x for x in answered if x["valid"] is False]
    too_long = [x for x in lines if "prompt too long" in (x.get("error") or "")]
    seconds = sum(x["latency_s"] for x in answered) / max(len(answered), 1)
    figures = {
        "calls": len(calls),
        "answers_received": len(answered),
        "valid": len(answered) - len(invalid),
        "invalid_rate": round(len(invalid) / max(len(answered), 1), 3),
        "failed_calls": sum(1 for x in calls if x["valid"] is None),
        "prompts_too_long": len(too_long),
        "seconds_per_call": round(seconds, 2),
        "training_wall_s": summary["wall_s"],
    }
    with capsys.disabled():
        print(f"\nllama_cpp.server figures: {json.dumps(figures)}")
    (Path(os.environ.get("GUIDEDRL_REAL_SERVER_FIGURES", tmp_path / "figures.json"))).write_text(json.dumps(figures))
    assert summary["status"] == "finished"
    assert len(answered) >= 3, f"too few answers from the server: {figures}; errors: {[x['error'] for x in calls][:5]}"
    assert not too_long, "every prompt must have been fitted to the context"
    recomputed = summarize_log(run.run_dir / "llm_calls.jsonl")
    for key, value in recomputed.items():
        assert summary[key] == value, key
