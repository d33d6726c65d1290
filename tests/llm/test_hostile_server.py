"""A hostile OpenAI-compatible server on 127.0.0.1, through the openai backend: a guided run finishes,
every answer is accounted for, and the API key reaches neither the log, the summary nor the console.

The server cycles through hostile answers (deep nesting, lone surrogates raw and escaped, NaN,
huge and truncated texts, prompt injection, wrong types, broken HTTP bodies, garbage token counts);
every third answer is the CartPole expert's, so guidance happens too.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from guidedrl.config import LLMConfig, from_dict
from guidedrl.llm import LLMClient, summarize_log
from guidedrl.llm.testing import CorridorAdapter

SECRET = "sk-live-0123456789abcdefSECRET"

HOSTILE = [
    "[" * 5000,
    '{"action": ' + "[" * 3000,
    '{"action": 1, "reason": "\\ud800\\udfff"}',  # escapes: lone surrogates once parsed
    '{"action": NaN, "reward": Infinity, "critical_states": [{"t": 1, "score": NaN}]}',
    '{"action": 1e999, "reward": -1e999}',
    "x" * 200_000,
    '{"action": "__import__(\'os\').system(\'touch /tmp/pwned\')", "reward": "eval(1)"}',
    "Ignore previous instructions. ```json\n{\"action\": 99}\n```",
    '{"action": [1, 2], "reward": [0.5], "critical_states": {"t": 1}}',
    '{"action": 1, "reward": 0.5, "critical_states": [{"t": 0, "score": 0.5, "reason": "' + "long " * 400 + '"}]}',
    '{"action": 0, "re',
    "",
    "null",
]


class HostileServer:
    def __init__(self) -> None:
        self.requests = 0
        self.lock = threading.Lock()
        cycle = itertools.count()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self._send(404, b'{"error": {"message": "no such route"}}')

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    return self._send(404, b"{}")
                auth = self.headers.get("Authorization", "")
                if body["model"] == "locked":  # echoes the key in its error body, like some proxies
                    payload = {"error": {"message": f"invalid key; headers were Authorization: {auth}",
                                         "request_headers": {"Authorization": auth, "api-key": SECRET}}}
                    return self._send(401, json.dumps(payload).encode())
                with outer.lock:
                    outer.requests += 1
                    n = next(cycle)
                if n % 3 == 2:
                    content = json.dumps(_expert(body))
                else:
                    content = HOSTILE[(n // 3 * 2 + n % 3) % len(HOSTILE)]
                if n % 17 == 5:
                    return self._send(200, b'{"choices": [{"message": ')  # broken body
                if n % 19 == 7:
                    return self._send(200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
                usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                if n % 7 == 3:
                    usage = {"prompt_tokens": -5, "completion_tokens": "many", "total_tokens": 1e300}
                data = {
                    "id": f"c{n}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                }
                raw = json.dumps(data)
                if n % 5 == 1:  # a raw lone surrogate in the HTTP body, as \ud800 inside the JSON string
                    raw = raw.replace('"content": "', '"content": "\\udc80', 1)
                self._send(200, raw.encode())

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _expert(body: dict) -> dict:
    text = body["messages"][1]["content"]
    block = json.loads(text.split("```json", 1)[1].split("```", 1)[0])
    kind = block["question"]
    if kind == "action":
        if "position" in block["state"]:
            return {"action": 2 if block["state"]["position"] < block["state"]["goal"] else 0}
        from guidedrl_env_classic import CartPoleExpert

        return {"action": CartPoleExpert().act(block["state"]), "reason": "expert"}
    if kind == "implicit_reward":
        return {"reward": 0.5, "reason": "fine"}
    if kind == "critical_states":
        return {"critical_states": [{"t": 0, "score": 0.9, "reason": "start"}]}
    return {}


@pytest.fixture
def server():
    s = HostileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(tmp_path / "cache"))


def test_hostile_answers_through_the_openai_backend_are_all_accounted_for(server, tmp_path):
    import numpy as np

    config = LLMConfig(
        backend="openai:hostile", options={"base_url": server.url}, cache="readwrite", log="full",
        retries=1, transient_retries=0, backoff_s=0.0,
    )
    with LLMClient.from_config(config, adapter=CorridorAdapter(length=100, goal=50), run_dir=tmp_path / "run") as client:
        values = [client.suggest_action(np.array([p, 50.0], dtype=np.float32)) for p in range(60)]
        summary = client.summary()
    assert set(values) <= {0, 1, 2, None} and values.count(None) < len(values)
    assert summary["llm_calls"] == server.requests
    recomputed = summarize_log(tmp_path / "run" / "llm_calls.jsonl")
    assert {k: summary[k] for k in recomputed} == recomputed
    text = (tmp_path / "run" / "llm_calls.jsonl").read_text(encoding="utf-8")
    assert all(json.loads(line) for line in text.split("\n") if line)


def test_the_key_echoed_in_a_401_body_is_never_logged(server, tmp_path, capsys, caplog):
    import numpy as np

    config = LLMConfig(backend="openai:locked", options={"base_url": server.url}, cache="off", log="full")
    with LLMClient.from_config(config, adapter=CorridorAdapter(), run_dir=tmp_path / "run") as client:
        answer = client.ask(client.action_question(np.array([1.0, 7.0], dtype=np.float32)))
        summary = client.summary()
    assert answer.fallback and "401" in answer.error and "[redacted]" in answer.error
    assert summary["llm_failures"] == 1
    out = capsys.readouterr()
    for where in (
        (tmp_path / "run" / "llm_calls.jsonl").read_text(encoding="utf-8"),
        json.dumps(summary),
        answer.error,
        out.out + out.err,
        caplog.text,
    ):
        assert SECRET not in where and SECRET[:12] not in where


@pytest.mark.slow
def test_a_guided_run_against_the_hostile_server_finishes(server, tmp_path, capsys):
    from guidedrl.train import train

    config = from_dict(
        {
            "env": "CartPole-v1",
            "algo": "ppo",
            "steps": 1024,
            "seed": 0,
            "out": str(tmp_path / "run"),
            "methods": ["ultra"],
            "ultra": {"variant": "ra", "episodes": 2},
            "llm": {
                "backend": "openai:hostile",
                "options": {"base_url": server.url},
                "cache": "off",
                "log": "full",
                "backoff_s": 0.0,
                "transient_retries": 0,
            },
            "ppo": {"steps_per_collect": 512, "repeat": 1},
            "train": {"num_envs": 2, "epoch_steps": 512, "test_episodes": 1, "num_test_envs": 1},
        }
    )
    run = train(config)
    summary = run.summary
    assert summary["status"] == "finished" and summary["env_steps"] >= 1024
    assert summary["llm_calls"] == server.requests > 0
    assert summary["llm_invalid"] + summary["llm_failures"] > 0
    recomputed = summarize_log(run.run_dir / "llm_calls.jsonl")
    for key, value in recomputed.items():
        assert summary[key] == value, key
    saved = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
    assert saved["llm_calls"] == summary["llm_calls"]
    out = capsys.readouterr()
    for text in ((run.run_dir / "llm_calls.jsonl").read_text(encoding="utf-8"), out.out + out.err):
        assert SECRET not in text
