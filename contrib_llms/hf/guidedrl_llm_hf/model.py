"""``ChatHF``: langchain-huggingface's ``ChatHuggingFace`` over a local transformers pipeline, with what
the LLM layer needs and the wrapper lacks for pipelines.

``ChatHuggingFace`` formats the messages with the model's chat template and runs a ``text-generation``
pipeline. Added here: async calls (the wrapper refuses them for pipelines; here they run in a worker
thread, and a cancelled call stops its generation at the next token), the layer's ``timeout``,
stop strings (the wrapper drops them for pipelines), one generation at a time per loaded model,
token counts, the context window, and a cache identity that includes the LoRA adapter's weights.

The model is loaded from local files only; a LoRA adapter is merged into a copy of the base model
once per process (``peft``'s ``merge_and_unload``), so generation costs what the base model costs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

from guidedrl.errors import ConfigError
from guidedrl.llm.finetune import one_line
from guidedrl.llm.options import check_options
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

OPTIONS = ("model", "lora", "max_tokens", "temperature", "seed", "device", "context_tokens")
EXTRA = "pip install 'guidedrl-llm-hf[hf]'"

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str | None, str | None, str], tuple[Any, Any, threading.Lock]] = {}


def _libs() -> tuple[Any, Any]:
    try:
        import transformers
        from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"the hf backend needs transformers and langchain-huggingface ({exc.name or exc} is not installed): {EXTRA}"
        ) from None
    import langchain_huggingface

    return transformers, langchain_huggingface


def _base_of(lora: Path) -> str | None:
    """The base model a LoRA adapter was trained on: ``finetune.json``'s ``base_model``, else peft's
    ``adapter_config.json`` ``base_model_name_or_path``."""
    for name, key in (("finetune.json", "base_model"), ("adapter_config.json", "base_model_name_or_path")):
        try:
            value = json.loads((lora / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return str(value)
    return None


def resolve_paths(model: str | None, lora: str | None) -> tuple[Path, Path | None]:
    """(base model dir, LoRA adapter dir or ``None``), checked; without ``model`` the adapter's own
    record names its base model."""
    lora_path = None
    if lora:
        lora_path = Path(lora).expanduser()
        if not (lora_path / "adapter_config.json").is_file():
            raise ConfigError(
                f"llm.options.lora {str(lora_path)!r} is not a LoRA adapter directory (no adapter_config.json): "
                "give the --out directory of `guidedrl finetune`"
            )
        if not model:
            model = _base_of(lora_path)
    if not model:
        raise ConfigError(
            "the hf backend needs a model: --llm hf:PATH or llm.options.model = PATH (a local Hugging Face "
            "model directory), or llm.options.lora = an adapter from `guidedrl finetune` (it names its base model)"
        )
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"the hf backend's model {str(path)!r} is not a local Hugging Face model directory (no config.json): "
            "give the folder save_pretrained wrote; models are never downloaded"
        )
    return path, lora_path


def _sha256(path: Path) -> str | None:
    weights = [p for p in sorted(path.glob("adapter_model.*")) if p.is_file()]
    if not weights:
        return None
    digest = hashlib.sha256()
    for p in weights:
        digest.update(p.read_bytes())
    return digest.hexdigest()


def _device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load(model: Path, lora: Path | None, lora_sha: str | None, device: str) -> tuple[Any, Any, threading.Lock]:
    """(pipeline, tokenizer, lock): one per (model, adapter, device) per process."""
    key = (str(model.resolve()), str(lora.resolve()) if lora else None, lora_sha, device)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        transformers, _ = _libs()
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar inside a run's output
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(model), local_files_only=True)
            base = transformers.AutoModelForCausalLM.from_pretrained(
                str(model), local_files_only=True, **({"dtype": "auto"} if device.startswith("cuda") else {})
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"the hf backend cannot load {model} as a causal language model: {one_line(exc)}") from None
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"the tokenizer in {model} has no chat template: the hf backend needs a chat/instruct model")
        if lora is not None:
            try:
                import peft
            except ImportError:
                raise ConfigError(f"llm.options.lora needs peft: {EXTRA}") from None
            try:
                with warnings.catch_warnings():  # the libraries' notices about each other's deprecations
                    warnings.simplefilter("ignore", FutureWarning)
                    base = peft.PeftModel.from_pretrained(base, str(lora), is_trainable=False).merge_and_unload()
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise ConfigError(f"the LoRA adapter {lora} does not fit the model {model}: {one_line(exc)}") from None
        base.eval()
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        pipe = transformers.pipeline("text-generation", model=base, tokenizer=tokenizer, device=device)
        _LOADED[key] = (pipe, tokenizer, threading.Lock())
        return _LOADED[key]


class _Stop:
    """A transformers stopping criterion: the call was cancelled, or its time is up."""

    def __init__(self, cancel: threading.Event, deadline: float | None) -> None:
        self.cancel, self.deadline, self.timed_out = cancel, deadline, False

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        return self.cancel.is_set() or self.timed_out


try:  # the class needs langchain-huggingface; the backend's factory names the extra when it is missing
    from langchain_huggingface import ChatHuggingFace
except ImportError:  # pragma: no cover - exercised by the missing-extra test through make_hf
    ChatHuggingFace = BaseChatModel  # type: ignore[assignment,misc]


class ChatHF(ChatHuggingFace):  # type: ignore[misc,valid-type]
    """A local Hugging Face chat model (built by :func:`make_hf`).

    LangChain's standard parameters: ``temperature`` (0: greedy), ``max_tokens``, ``stop``, ``timeout``
    (generation stops and ``TimeoutError`` is raised).
    """

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    accepts_json_schema: ClassVar[bool] = False

    model_name: str
    model_path: str
    lora_path: str | None = None
    lora_sha256: str | None = None
    """The adapter's weights: answers of two rounds written to one directory are cached apart."""
    context: int = Field(default=2048, ge=16)
    timeout: float | None = Field(default=None, gt=0.0)
    max_tokens: int | None = Field(default=128, ge=1)
    temperature: float | None = Field(default=0.0, ge=0.0)
    seed: int | None = 0
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "guidedrl-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_path": self.model_path,
            "lora_path": self.lora_path,
            "lora_sha256": self.lora_sha256,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False  # the pipeline is not serialisable; the cache keys on _identifying_params

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="huggingface", ls_model_name=kwargs.get("model") or self.model_name, ls_model_type="chat"
        )
        params["ls_temperature"] = self.temperature or 0.0
        if self.max_tokens:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = list(stop or self._stops(None))
        return params

    def context_window(self) -> int:
        """The model's ``max_position_embeddings`` (or ``llm.options.context_tokens``)."""
        return self.context

    def _messages(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [self._to_chatml_format(m) for m in messages]

    def count_prompt_tokens(self, messages: list[BaseMessage]) -> int:
        """Exact tokens of ``messages`` in the model's chat template, with the generation prompt."""
        text = self.tokenizer.apply_chat_template(self._messages(messages), tokenize=False, add_generation_prompt=True)
        # verbose=False: a prompt longer than the model's context is counted, not warned about (the layer
        # decides what to send)
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _stops(self, stop: list[str] | None) -> list[str]:
        if stop:
            return list(stop)
        if isinstance(self.stop, str):
            return [self.stop]
        return list(self.stop or [])

    def _pipeline_kwargs(self, criterion: _Stop) -> dict[str, Any]:
        import transformers

        sampled = bool(self.temperature)
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_tokens or 128,
            "do_sample": sampled,
            "return_full_text": False,
            "stopping_criteria": transformers.StoppingCriteriaList([criterion]),
        }
        if sampled:
            kwargs["temperature"] = self.temperature
        return kwargs

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        *,
        cancel: threading.Event | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        import transformers

        criterion = _Stop(cancel or threading.Event(), None if self.timeout is None else time.monotonic() + self.timeout)
        with self._lock:
            if self.temperature and self.seed is not None:
                transformers.set_seed(self.seed)  # a sampled answer depends on the prompt only
            result = super()._generate(
                messages, stop=None, run_manager=run_manager, pipeline_kwargs=self._pipeline_kwargs(criterion)
            )
        if criterion.timed_out:
            raise TimeoutError(f"hf generation took longer than timeout={self.timeout:g} s")
        text = result.generations[0].message.text
        finish = "length"
        for s in self._stops(stop):
            if s and s in text:
                text, finish = text[: text.index(s)], "stop"
        n_in = self.count_prompt_tokens(messages)
        n_out = len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        if finish == "length" and n_out < (self.max_tokens or 128):
            finish = "stop"
        message = AIMessage(
            content=text.strip(),
            usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out},
            response_metadata={"model_name": self.model_name, "model_provider": "huggingface", "finish_reason": finish},
        )
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
        future = loop.run_in_executor(None, lambda: self._generate(messages, stop, None, cancel=cancel))
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
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # one chunk with the whole answer: the wrapper's pipeline streaming runs a second, unlocked
        # generation thread and ignores stop strings
        result = self._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        chunk = ChatGenerationChunk(
            message=AIMessageChunk(
                content=message.content,
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
            )
        )
        if run_manager is not None:
            run_manager.on_llm_new_token(message.text, chunk=chunk)
        yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # LangChain's default: the sync stream in a worker thread (the wrapper's needs an endpoint)
        async for chunk in BaseChatModel._astream(self, messages, stop, run_manager, **kwargs):
            yield chunk


def make_hf(
    *, adapter: Any = None, model: str | None = None, lora: str | None = None, **options: Any
) -> ChatHF:
    """``hf:PATH`` or ``hf`` with ``llm.options.model = PATH`` (a local Hugging Face model directory);
    ``llm.options.lora = DIR`` adds a LoRA adapter from ``guidedrl finetune`` (alone, it names its base
    model). Options: ``max_tokens`` (128), ``temperature`` (0: greedy), ``seed`` (0), ``device``
    (``auto``: cuda when there is one), ``context_tokens`` (default: the model's
    ``max_position_embeddings``).

    ``lora``, not ``adapter``: a backend factory's ``adapter`` argument is the run's env adapter."""
    check_options("hf", options, OPTIONS)
    _, langchain_huggingface = _libs()
    model_path, lora_path = resolve_paths(model, lora)
    device = _device(str(options.pop("device", "auto")))
    lora_sha = _sha256(lora_path) if lora_path else None
    pipe, tokenizer, lock = _load(model_path, lora_path, lora_sha, device)
    context = int(
        options.pop("context_tokens", None)
        or getattr(pipe.model.config, "max_position_embeddings", None)
        or 2048
    )
    name = model_path.name + (f"+{lora_path.name}" if lora_path else "")
    llm = langchain_huggingface.HuggingFacePipeline(pipeline=pipe, model_id=str(model_path))
    chat = ChatHF(
        llm=llm,
        tokenizer=tokenizer,
        model_name=name,
        model_path=str(model_path),
        lora_path=str(lora_path) if lora_path else None,
        lora_sha256=lora_sha,
        context=context,
        **options,
    )
    chat._lock = lock
    return chat
