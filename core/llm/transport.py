"""Getting an answer safely: cache, budgets, concurrency, retries with timeouts, the call log.

:class:`Transport` knows nothing about what is asked. It takes :class:`Prepared` questions (messages,
a parser, a validator, a fallback) and returns :class:`~guidedrl.llm.Answer` objects, never an
exception for LLM misbehaviour. Calls run on the transport's own asyncio event loop in a background
thread, so it works from any thread, any number of times, and from code that already runs an event
loop; batched questions run concurrently up to ``max_concurrency``.

Transient backend errors are retried with tenacity, the library under LangChain's
``Runnable.with_retry``: with_retry's callback set-up and two extra tasks cost about 0.5 ms per call
on the one event loop (15 us for tenacity itself), which cut the concurrency speed-up of
``benchmarks/llm_layer.py`` from 7.3x to 6.5x. Hand-written, because LangChain has none of it: the
response cache keyed on prompt + model that stores only validated answers, the budgets, the re-ask
of an invalid answer with its error fed back (each re-ask logged and counted), the shared hold-back
after timeouts, and the call log.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from guidedrl.config import LLMConfig
from guidedrl.llm.budget import Budget
from guidedrl.llm.cache import ResponseCache, cache_key
from guidedrl.llm.calllog import CallLog
from guidedrl.llm.context_window import ContextWindow
from guidedrl.llm.eventloop import BackgroundLoop, shutdown
from guidedrl.llm.parsing import StrictPydanticOutputParser, feedback, parse_and_validate
from guidedrl.llm.questions import Answer, Question
from guidedrl.llm.replies import is_transient, prompt_data, reported_tokens, short_error
from guidedrl.llm.safety import clean_text, secrets_of
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

logger = logging.getLogger("guidedrl.llm")

#: Failures and fallbacks announced on the console (with their reason) before the rest are only counted.
ANNOUNCED_FAILURES = 3


@attrs.define
class Prepared:
    """A question rendered to messages, with its cache key and parser (see :meth:`Transport.prepare`)."""

    number: int
    question: Question
    messages: list[BaseMessage]
    key: str
    prompt_sha256: str
    parser: StrictPydanticOutputParser
    json_schema: dict[str, Any]
    too_long: str | None = None
    """Why the prompt is not sent (it does not fit the model's context), or ``None``."""


class Transport:
    """Asks prepared questions; every answer is validated, cached and logged; budgets are kept."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        config: LLMConfig,
        run_dir: str | Path | None,
        label: str,
        cache: ResponseCache | None = None,
    ) -> None:
        self.config = config
        self.label = label
        self.model_name = str(
            getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__
        )
        self.cache = cache if cache is not None else ResponseCache(config.cache_path, mode=config.cache)
        self.log = CallLog(run_dir, full=config.log == "full")
        self.budget = Budget(config, tokens=lambda log=self.log: log.tokens)
        self.context = ContextWindow(model, config.context_tokens, label)
        self._model = model
        self._params = model._get_llm_string()  # what LangChain's own caches key on
        self._accepts_schema = bool(getattr(model, "accepts_json_schema", False))
        self._secrets = secrets_of(model)
        self._numbers = itertools.count(1)  # question numbers in the log (thread-safe in CPython)
        self.questions = 0
        self._closed = False
        self._announced = 0
        self.first_error: str | None = None
        self._timeouts_in_a_row = 0  # shared backoff: a slow server is not hit by a retry storm
        self._backoff_until = 0.0
        self._loop = loop = BackgroundLoop(workers=config.max_concurrency + 2)
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._finalizer = weakref.finalize(
            self, shutdown, loop.loop, loop.thread, loop.executor, self.cache, self.log
        )

    @property
    def model(self) -> BaseChatModel:
        return self._model

    @model.setter
    def model(self, model: BaseChatModel) -> None:
        self._model = self.context.model = model

    # -- asking ------------------------------------------------------------------------------
    def prepare(
        self,
        question: Question,
        messages: list[BaseMessage],
        parser: StrictPydanticOutputParser,
        json_schema: dict[str, Any],
    ) -> Prepared:
        """``question`` rendered as ``messages``, numbered and keyed for the cache."""
        prompt = prompt_data(messages)
        number = next(self._numbers)
        self.questions = max(self.questions, number)
        return Prepared(
            number=number,
            question=question,
            messages=messages,
            key=cache_key(backend=self.label, model=self.model_name, params=self._params, prompt=prompt),
            prompt_sha256=hashlib.sha256(
                json.dumps(prompt, ensure_ascii=False).encode("utf-8", "surrogatepass")
            ).hexdigest(),
            parser=parser,
            json_schema=json_schema,
            too_long=self.context.too_long(messages),
        )

    def ask_many(self, prepared: Sequence[Prepared]) -> list[Answer]:
        """Ask prepared questions concurrently (at most ``max_concurrency`` calls in flight)."""
        self.check_caller()
        if not prepared:
            return []
        self.budget.start_waiting()
        try:
            return self._loop.run(self._ask_all(list(prepared)))
        finally:
            self.budget.stop_waiting()

    def check_caller(self) -> None:
        """Raise ``RuntimeError`` when the transport is closed or called from its own loop's thread."""
        if self._closed:
            raise RuntimeError("this LLMClient is closed; create a new one")
        if self._loop.on_loop_thread():
            raise RuntimeError("LLMClient.ask* cannot be called from the client's own event loop thread")

    def validate(self, p: Prepared, raw: str) -> Any:
        """The value of answer text ``raw`` to ``p``; raises with the reason when it cannot be used."""
        return parse_and_validate(p.parser, p.question.validator, raw)

    def close(self) -> None:
        """Stop the event loop thread and close the cache and the log. Idempotent."""
        self._closed = True
        self._finalizer()

    # -- one question ------------------------------------------------------------------------
    async def _ask_all(self, prepared: list[Prepared]) -> list[Answer]:
        return list(await asyncio.gather(*(self._ask_one(p) for p in prepared)))

    async def _ask_one(self, p: Prepared) -> Answer:
        question = p.question
        reason = self.budget.check()
        if reason is not None:
            return self._skip(p, attempt=0, error=f"budget exhausted: {reason['reason']}")
        cached = self._from_cache(p)
        if cached is not None:
            return cached
        if p.too_long is not None:
            self._announce(p, "question not asked", p.too_long)
            return self._skip(p, attempt=0, error=p.too_long)
        # re-asking an invalid answer with its error fed back is hand-written: every re-ask is a
        # logged, budgeted call, and only the valid answer is cached (LangChain's retry parsers do neither)
        messages = list(p.messages)
        calls = [0]  # backend calls made for this question (transient retries included)
        raw = None
        last_attempt = self.config.retries + 1
        for attempt in range(1, last_attempt + 1):
            try:
                result = await self._call(p, messages, attempt, calls)
            except _BudgetSpent as exc:
                error = f"budget exhausted: {exc.args[0]['reason']}"
                return self._skip(p, attempt=attempt, error=error, raw=raw, attempts=calls[0])
            except _CallFailed as exc:
                return Answer(
                    value=question.fallback, ok=False, fallback=True, error=str(exc), raw=raw, attempts=calls[0]
                )
            raw = result.raw
            try:
                value = self.validate(p, raw)
            except Exception as exc:  # noqa: BLE001 - no answer may stop training: every error is invalid
                error = self._error_text(exc)
                final = attempt == last_attempt
                self._log_answered(p, messages, attempt, result, valid=False, fallback=final, error=error)
                if final:
                    self._announce(p, "answer invalid after re-asking", error)
                    return Answer(
                        value=question.fallback, ok=False, fallback=True, error=error, raw=raw, attempts=calls[0]
                    )
                messages = [*messages, AIMessage(content=raw), HumanMessage(content=feedback(error))]
                continue
            self._log_answered(p, messages, attempt, result, valid=True, fallback=False, error=None)
            if self.cache.writable:
                self.cache.put(p.key, raw, backend=self.label, model=self.model_name, kind=question.kind)
            return Answer(value=value, ok=True, raw=raw, attempts=calls[0])
        raise AssertionError("unreachable")  # pragma: no cover

    def _from_cache(self, p: Prepared) -> Answer | None:
        """The cached answer to ``p`` if there is one and it is still valid, else ``None``."""
        if not self.cache.readable:
            return None
        started = time.perf_counter()
        raw = self.cache.get(p.key)
        if raw is None:
            return None
        try:
            value = self.validate(p, raw)
        except Exception:  # noqa: BLE001 - a stale entry (e.g. a changed vocabulary): ask again
            return None
        latency = round(time.perf_counter() - started, 6)
        fields = self._line(p, attempt=0, latency_s=latency, tokens=None, cache_hit=True, valid=True)
        self.log.write("cache_hit", **fields, failed=False, fallback=False, error=None, answer=raw)
        return Answer(value=value, ok=True, cached=True, raw=raw)

    # -- one call ----------------------------------------------------------------------------
    async def _call(self, p: Prepared, messages: list[BaseMessage], attempt: int, calls: list[int]) -> _CallResult:
        """One answer from the backend, retrying transient errors with exponential backoff.
        Every errored call is logged in :func:`_try_once`; the caller logs the call that returned text."""
        job = _Job(self, p, messages, attempt, calls)
        backoff = self.config.backoff_s
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(self.config.transient_retries + 1),
            wait=wait_exponential_jitter(multiplier=backoff, max=30.0, jitter=backoff / 2),
            reraise=True,
        )
        try:
            async for retry in retrying:
                with retry:
                    return await _try_once(job)
        except _Transient as exc:  # pragma: no cover - _try_once never asks to retry its last try
            raise _CallFailed(str(exc)) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _hold_back(self) -> None:
        """Start a hold-back window after a timeout or transient error; errors of calls that were in
        flight together count once, so the window doubles per round of errors, not per call.
        Hand-written: tenacity's waits are per question, this one is shared by all of them."""
        now = time.monotonic()
        if now < self._backoff_until:
            return
        self._timeouts_in_a_row += 1
        wait = min(self.config.backoff_s * 2 ** (self._timeouts_in_a_row - 1), 30.0)
        self._backoff_until = now + wait

    def _cut_by_wall(self, p: Prepared, messages: list[BaseMessage], attempt: int, latency: float) -> _CallFailed:
        """A call cut because ``max_wall_s`` ran out: a budget stop, logged as one (not a timeout)."""
        self.budget.spend("max_wall_s", self.config.max_wall_s)
        error = "budget exhausted: max_wall_s (the call in flight was cut)"
        self._log_unanswered(p, messages, attempt, latency, error, failed=False, fallback=True)
        return _CallFailed(error)

    async def _invoke(self, p: Prepared, messages: list[BaseMessage]) -> AIMessage:
        kwargs = {"json_schema": p.json_schema} if self._accepts_schema else {}
        return await self.model.ainvoke(messages, **kwargs)

    # -- the call log and the console --------------------------------------------------------
    def _line(self, p: Prepared, **fields: Any) -> dict[str, Any]:
        return {
            "q": p.number,
            "kind": p.question.kind,
            "prompt_sha256": p.prompt_sha256,
            "backend": self.label,
            "model": self.model_name,
            **fields,
        }

    def _log_answered(
        self,
        p: Prepared,
        messages: list[BaseMessage],
        attempt: int,
        result: _CallResult,
        *,
        valid: bool,
        fallback: bool,
        error: str | None,
    ) -> None:
        """The call-log line of a call that brought back text (valid or not)."""
        fields = self._line(p, attempt=attempt, latency_s=result.latency_s, tokens=result.tokens, cache_hit=False)
        self.log.write(
            "call",
            **fields,
            valid=valid,
            failed=False,
            fallback=fallback,
            error=error,
            prompt=prompt_data(messages),
            answer=result.raw,
        )

    def _log_unanswered(
        self,
        p: Prepared,
        messages: list[BaseMessage],
        attempt: int,
        latency: float,
        error: str,
        *,
        failed: bool,
        fallback: bool,
    ) -> None:
        """The call-log line of a call that brought back no answer (an error, or cut by the budget)."""
        fields = self._line(p, attempt=attempt, latency_s=latency, tokens=None, cache_hit=False, valid=None)
        self.log.write(
            "call", **fields, failed=failed, fallback=fallback, error=error, prompt=prompt_data(messages)
        )

    def _skip(self, p: Prepared, *, attempt: int, error: str, raw: str | None = None, attempts: int = 0) -> Answer:
        fields = self._line(p, attempt=attempt, latency_s=0.0, tokens=None, cache_hit=False, valid=None)
        self.log.write("skipped", **fields, failed=False, fallback=True, error=error)
        return Answer(value=p.question.fallback, ok=False, fallback=True, error=error, raw=raw, attempts=attempts)

    def _error_text(self, exc: BaseException) -> str:
        """An exception as one loggable line: surrogate-free, secrets redacted, at most 500 characters."""
        return short_error(exc, secrets=self._secrets)

    def _announce(self, p: Prepared, what: str, error: str) -> None:
        """The first failures and fallbacks of a run, with their reason, on the console."""
        if self.first_error is None:
            self.first_error = error
        if self._announced >= ANNOUNCED_FAILURES:
            return
        self._announced += 1
        more = (
            "; later ones are only counted (summary.json llm_failures/llm_fallbacks, reasons in "
            "llm_calls.jsonl)"
            if self._announced == ANNOUNCED_FAILURES
            else ""
        )
        line = " ".join(error.split())
        line = line if len(line) <= 300 else line[:297] + "..."
        logger.warning("LLM %s (%s, %s question): %s%s", what, self.label, p.question.kind, line, more)


class _CallFailed(Exception):
    """The backend errored and will not be retried."""


class _Transient(Exception):
    """The backend errored transiently and the call is worth retrying."""


class _BudgetSpent(Exception):
    pass


@attrs.frozen
class _CallResult:
    raw: str
    latency_s: float
    tokens: int | None


@attrs.define
class _Job:
    """One backend call with its transient retries."""

    transport: Transport
    p: Prepared
    messages: list[BaseMessage]
    attempt: int
    calls: list[int]
    tries: int = 0


async def _try_once(job: _Job) -> _CallResult:
    """One try of a call; raises :class:`_Transient` to be retried, :class:`_CallFailed` when not.

    A timeout or transient error also holds back every later call of the transport for a while
    (``backoff_s``, doubling with each round of such errors in a row, at most 30 s), so that the next
    questions do not pile onto a slow server; a call that answers resets it."""
    t, p, messages = job.transport, job.p, job.messages
    job.tries += 1
    # a call counts against max_calls when it gets a slot, not while it waits for one
    async with t._semaphore:
        hold = t._backoff_until - time.monotonic()
        if hold > 0:
            await asyncio.sleep(hold)
        reason = t.budget.check()
        if reason is not None:
            raise _BudgetSpent(reason)
        t.budget.calls_started += 1
        job.calls[0] += 1
        started = time.perf_counter()
        timeout, cut_by_wall = t.budget.call_timeout()
        try:
            message = await asyncio.wait_for(t._invoke(p, messages), timeout=timeout)
            raw, tokens = clean_text(message.text), reported_tokens(message)
        except Exception as exc:
            latency = round(time.perf_counter() - started, 6)
            if cut_by_wall and isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
                raise t._cut_by_wall(p, messages, job.attempt, latency) from exc
            error = t._error_text(exc)
            t.context.learn(error)
            if is_transient(exc):
                t._hold_back()
            retry = (
                is_transient(exc)
                and t.budget.check() is None
                and job.tries < t.config.transient_retries + 1
            )
            t._log_unanswered(p, messages, job.attempt, latency, error, failed=not retry, fallback=not retry)
            if not retry:
                t._announce(p, "call failed", error)
                raise _CallFailed(error) from exc
            raise _Transient(error) from exc
        t._timeouts_in_a_row = 0
        return _CallResult(raw, round(time.perf_counter() - started, 6), tokens)


