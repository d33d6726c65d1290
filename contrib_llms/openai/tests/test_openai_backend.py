"""The openai backend against a local OpenAI-compatible server (stdlib ``http.server`` in a thread).

The model name picks the server's behaviour: ``expert`` answers well, ``slow`` never in time,
``error`` always 500, ``flaky`` hangs on every other request, ``ratelimit`` says 429 once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from guidedrl import registry
from guidedrl.config import LLMConfig
from guidedrl.errors import ConfigError
from guidedrl.llm import LLMClient, is_transient, summarize_log
from guidedrl.llm.testing import CorridorAdapter
from guidedrl_llm_openai import make_openai

SECRET = "sk-test-0123456789-do-not-log"


class Server:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.counts: Counter[str] = Counter()
        self.auth: list[str] = []
        self.routes: dict[str, dict] = {}  # GET path -> JSON answer (what a server says of itself)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path in server.routes:
                    return self._send(200, server.routes[self.path])
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                model = body["model"]
                with server.lock:
                    server.requests.append(body)
                    server.counts[model] += 1
                    server.auth.append(self.headers.get("Authorization", ""))
                    n = server.counts[model]
                if model == "error":
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if model == "ratelimit" and n == 1:
                    return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}})
                if model == "slow" or (model == "flaky" and n % 2 == 1):
                    time.sleep(2.0)
                state = json.loads(body["messages"][-1]["content"].split("```json", 1)[1].split("```", 1)[0])[
                    "state"
                ]
                action = 2 if state["position"] < state["goal"] else 0
                return self._send(
                    200,
                    {
                        "id": f"c{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": json.dumps({"action": action})},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105},
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(tmp_path / "cache"))


def make(server: Server, model: str, tmp_path: Path, **cfg) -> LLMClient:
    cfg.setdefault("backoff_s", 0.01)
    options = {"base_url": server.url, **cfg.pop("options", {})}
    config = LLMConfig(backend=f"openai:{model}", options=options, **cfg)
    return LLMClient.from_config(
        config, adapter=CorridorAdapter(length=100, goal=50), run_dir=tmp_path / "run"
    )


def obs(p: int) -> np.ndarray:
    return np.array([p, 50.0], dtype=np.float32)


def test_registered_through_the_entry_point():
    assert registry.LLMS.get("openai").factory is make_openai


def test_answers_through_the_server_with_the_key_from_the_environment(server, tmp_path):
    with make(server, "expert", tmp_path, log="full", cache="readwrite") as client:
        assert client.suggest_actions(np.stack([obs(10), obs(90), obs(20)])) == [2, 0, 2]
        assert client.suggest_action(obs(10)) == 2  # cached
        s = client.summary()
    assert (s["llm_calls"], s["llm_cache_hits"], s["llm_tokens"]) == (3, 1, 315)
    assert s["llm_backend"] == "openai:expert"
    assert set(server.auth) == {f"Bearer {SECRET}"}
    assert server.requests[0]["messages"][0]["role"] == "system"
    for path in (tmp_path / "run" / "llm_calls.jsonl", tmp_path / "cache" / "llm_cache.sqlite"):
        assert SECRET.encode() not in path.read_bytes()


def test_slow_server_times_out_and_falls_back(server, tmp_path):
    with make(server, "slow", tmp_path, timeout_s=0.3, transient_retries=1, cache="off") as client:
        started = time.perf_counter()
        assert client.suggest_action(obs(10)) is None
        assert time.perf_counter() - started < 1.9
        s = client.summary()
    assert (s["llm_calls"], s["llm_failures"], s["llm_fallbacks"]) == (2, 1, 1)


def test_server_errors_are_retried_then_fall_back(server, tmp_path):
    with make(server, "error", tmp_path, transient_retries=2, cache="off") as client:
        answer = client.ask(client.action_question(obs(10)))
        s = client.summary()
    assert answer.fallback and "500" in answer.error
    assert server.counts["error"] == 3  # the openai client itself does not retry (max_retries=0)
    assert (s["llm_calls"], s["llm_failures"]) == (3, 1)
    assert summarize_log(tmp_path / "run" / "llm_calls.jsonl")["llm_failures"] == 1


def test_rate_limit_is_retried(server, tmp_path):
    with make(server, "ratelimit", tmp_path, transient_retries=2, cache="off") as client:
        assert client.suggest_action(obs(10)) == 2
        assert client.summary()["llm_failures"] == 0
    assert server.counts["ratelimit"] == 2


def test_server_that_hangs_half_the_time(server, tmp_path):
    with make(
        server, "flaky", tmp_path, timeout_s=0.5, transient_retries=1, max_concurrency=4, cache="off"
    ) as client:
        answers = client.suggest_actions(np.stack([obs(p) for p in range(8)]))
        s = client.summary()
    # every question's retry lands on the server's good half or its bad half; none raises
    assert all(a in (2, None) for a in answers) and answers.count(2) >= 1
    assert s["llm_calls"] == server.counts["flaky"]
    assert s["llm_fallbacks"] == answers.count(None) == s["llm_failures"]


def test_json_mode_asks_the_server_for_json(server, tmp_path):
    with make(server, "expert", tmp_path, cache="off", options={"json_mode": True}) as client:
        assert client.suggest_action(obs(10)) == 2
    assert server.requests[-1]["response_format"] == {"type": "json_object"}


def test_keys_never_come_from_config(monkeypatch):
    with pytest.raises(ConfigError, match="environment variable"):
        make_openai(model="gpt-4o-mini", api_key="sk-123")
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_openai(model="gpt-4o-mini")
    monkeypatch.setenv("MY_KEY", "sk-mine")
    assert (
        make_openai(model="gpt-4o-mini", api_key_env="MY_KEY").openai_api_key.get_secret_value() == "sk-mine"
    )
    assert (
        make_openai(model="local", base_url="http://127.0.0.1:1/v1") is not None
    )  # local servers need no key


def test_options_are_checked():
    with pytest.raises(ConfigError, match="Did you mean 'base_url'"):
        make_openai(model="m", base_ur="http://x")
    with pytest.raises(ConfigError, match="needs a model"):
        make_openai(base_url="http://x")


def test_openai_errors_are_classified():
    import httpx
    import openai

    request = httpx.Request("POST", "http://x/v1/chat/completions")
    assert is_transient(openai.APIConnectionError(request=request))
    assert is_transient(openai.APITimeoutError(request=request))
    rate = openai.RateLimitError("slow down", response=httpx.Response(429, request=request), body=None)
    assert is_transient(rate)
    bad = openai.BadRequestError("bad", response=httpx.Response(400, request=request), body=None)
    assert not is_transient(bad)


def test_the_one_timeout_is_llm_timeout_s():
    with pytest.raises(ConfigError, match="llm.timeout_s"):
        make_openai(model="m", base_url="http://127.0.0.1:1/v1", timeout=60)
    model = make_openai(model="m", base_url="http://127.0.0.1:1/v1")
    assert model.request_timeout is None and model.max_retries == 0  # the layer times out and retries


@pytest.mark.parametrize(
    ("routes", "context"),
    [
        ({"/v1/models": {"data": [{"id": "m", "max_model_len": 4096}]}}, 4096),  # vLLM
        ({"/props": {"default_generation_settings": {"n_ctx": 8192}}}, 8192),  # llama.cpp server
        ({}, None),  # llama_cpp.server (Python) says nothing: set llm.context_tokens
    ],
)
def test_the_context_is_asked_of_a_local_server(server, tmp_path, routes, context):
    server.routes.update(routes)
    with make(server, "expert", tmp_path, cache="off") as client:
        assert client.context_tokens() == context
        assert client.suggest_action(obs(10)) == 2


def test_prompts_are_fitted_to_the_context_the_server_reports(server, tmp_path):
    server.routes["/props"] = {"default_generation_settings": {"n_ctx": 300}}
    with make(server, "expert", tmp_path, cache="off") as client:
        answer = client.ask(client.action_question(obs(10)))
    assert answer.fallback and "prompt too long" in answer.error and "300 tokens" in answer.error
    assert server.requests == []  # never sent
