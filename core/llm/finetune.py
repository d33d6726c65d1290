"""A LoRA round on a local Hugging Face causal LM from chat-format JSONL (``guidedrl finetune``).

Any method can export fine-tuning data as JSONL, one example a line, in TRL's conversational format:
``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}`` (other keys, such
as ACE's ``"kind"``, are kept for the record and ignored by training). The last message is the answer
to learn and must be the assistant's; everything before it is the prompt. Each example becomes a
prompt-completion pair, so the loss is on the answer only (TRL's ``completion_only_loss``) whatever
the model's chat template.

The round itself is TRL's ``SFTTrainer`` with a peft ``LoraConfig`` (``target_modules="all-linear"``,
so any architecture works); on a GPU when there is one, else on the CPU. It writes the LoRA adapter
(``adapter_config.json``, ``adapter_model.safetensors``), the tokenizer, and ``finetune.json``: the
base model, the sources, the examples used and skipped, the mean answer loss over the examples
before and after training, the settings and the time. The ``hf`` LLM backend
(``guidedrl-llm-hf``) loads the base model with the adapter for the next run.

Needs the ``finetune`` extra (trl, peft, transformers, datasets); without it the round stops with
one line naming ``pip install 'guidedrl[finetune]'``. Nothing heavy is imported until it runs.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from guidedrl.errors import ConfigError, RunFileError

#: The files ``guidedrl finetune RUN_DIR`` reads from a run directory.
SOURCE_GLOB = "*finetune*.jsonl"
#: The record written beside the adapter.
RECORD = "finetune.json"
ROLES = ("system", "user", "assistant")
EXTRA = "pip install 'guidedrl[finetune]'"


class FinetuneExtraMissing(ConfigError):
    """The ``finetune`` extra (trl, peft, transformers, datasets) is not installed."""


def _positive(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"finetune {attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class FinetuneConfig:
    """Settings of one LoRA round (the ``guidedrl finetune`` flags)."""

    epochs: float = attrs.field(default=3.0, validator=_positive)
    """Passes over the examples."""
    lr: float = attrs.field(default=2e-4, validator=_positive)
    """AdamW learning rate of the LoRA weights (constant schedule)."""
    lora_r: int = attrs.field(default=8, validator=_positive)
    """Rank of the LoRA matrices."""
    lora_alpha: int | None = attrs.field(default=None, validator=_positive)
    """LoRA scaling numerator; ``None``: ``2 * lora_r``."""
    lora_dropout: float = attrs.field(default=0.0, validator=attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.lt(1.0)))
    """Dropout on the LoRA branch."""
    batch_size: int = attrs.field(default=4, validator=_positive)
    """Examples per optimizer step."""
    max_examples: int | None = attrs.field(default=None, validator=_positive)
    """Use at most this many examples (a seeded random sample); ``None``: all."""
    max_length: int = attrs.field(default=2048, validator=_positive)
    """Examples longer than this many tokens (prompt and answer, in the chat template; at most the
    model's context) are skipped and counted: truncating them would cut the answer, the only part
    that is learnt."""
    seed: int = 0
    """Seeds the sample of examples, the LoRA initialisation and the data order."""


# -- reading the examples ---------------------------------------------------------------------------


def find_sources(source: str | Path) -> list[Path]:
    """The JSONL files of ``source``: the file itself, or every ``*finetune*.jsonl`` in a run directory."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob(SOURCE_GLOB) if p.is_file())
        if not files:
            raise RunFileError(
                f"{path} has no fine-tuning data (no {SOURCE_GLOB} file): run with a method that exports "
                "it (e.g. --methods ace, which writes ace_finetune.jsonl), or give a JSONL file"
            )
        return files
    raise ConfigError(f"{path} does not exist: give a run directory or a chat-format JSONL file")


def _check_example(example: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(example, dict) or not isinstance(example.get("messages"), list):
        raise RunFileError(f'{where}: not a chat example; each line must be {{"messages": [{{"role": ..., "content": ...}}, ...]}}')
    messages = example["messages"]
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise RunFileError(f"{where}: every message needs a role in {', '.join(ROLES)} and a string content, got {str(m)[:80]!r}")
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
        raise RunFileError(f"{where}: an example needs a user message and ends with the assistant's answer (the text to learn)")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def load_examples(paths: list[Path]) -> list[dict[str, Any]]:
    """Every example of ``paths``, checked: ``{"messages": [...], "kind": ...}`` (``kind`` may be ``None``)."""
    examples = []
    for path in paths:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise RunFileError(f"{where}: not JSON ({exc.msg}); each line must be one chat example") from None
                examples.append({"messages": _check_example(raw, where), "kind": raw.get("kind")})
    if not examples:
        raise RunFileError(f"no examples in {', '.join(map(str, paths))}: the file is empty")
    return examples


def prompt_completion(example: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """A chat example as TRL's conversational prompt-completion pair: the answer is the completion."""
    return {"prompt": example["messages"][:-1], "completion": example["messages"][-1:]}


# -- the round --------------------------------------------------------------------------------------


def _require() -> dict[str, Any]:
    try:  # trl first: it needs the others, so a bare environment fails at once
        import trl
        import peft
        import transformers
        import datasets
    except ImportError as exc:
        raise FinetuneExtraMissing(
            f"guidedrl finetune needs the finetune extra (trl, peft, transformers, datasets): {EXTRA} "
            f"({exc.name or exc} is not installed)"
        ) from None
    return {"datasets": datasets, "peft": peft, "transformers": transformers, "trl": trl}


def model_path(model_dir: str | Path) -> Path:
    """``model_dir`` if it is a local Hugging Face model directory; a :class:`ConfigError` otherwise
    (a hub id is refused: nothing is downloaded)."""
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is not a Hugging Face model directory (no config.json): give the folder that "
            "save_pretrained wrote (config.json, the weights and the tokenizer files)"
        )
    return path


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, at most ``limit`` characters (library errors span many)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_base(model_dir: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) of a local Hugging Face causal LM, from local files only; a clear
    :class:`ConfigError` otherwise."""
    path = model_path(model_dir)
    transformers = _require()["transformers"]
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path} cannot be loaded as a causal language model with its tokenizer: {one_line(exc)}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"the tokenizer in {path} has no chat template: chat examples need one (use a chat/instruct "
            "model, or set tokenizer.chat_template and save it)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _n_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding in some transformers versions
        ids = ids["input_ids"]
    return len(ids)


def _versions(libs: dict[str, Any]) -> dict[str, str]:
    import torch

    return {"torch": torch.__version__, **{name: str(getattr(mod, "__version__", "?")) for name, mod in libs.items()}}


def finetune(
    source: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    *,
    overwrite: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One LoRA round: train on the examples of ``source`` and write the adapter and ``finetune.json``
    into ``out_dir``. Returns the record (what ``finetune.json`` holds)."""
    config = config or FinetuneConfig()
    say = log or (lambda _msg: None)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a directory for the adapter")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} is not empty: choose a new directory, or pass --overwrite to replace it")
    paths = find_sources(source)
    examples = load_examples(paths)
    model_path(model_dir)
    libs = _require()
    if quiet:
        libs["transformers"].logging.set_verbosity_error()
        libs["transformers"].logging.disable_progress_bar()
        libs["datasets"].disable_progress_bars()
    started = time.monotonic()
    model, tokenizer = load_base(model_dir)

    n_read = len(examples)
    if config.max_examples is not None and n_read > config.max_examples:
        examples = random.Random(config.seed).sample(examples, config.max_examples)
    context = getattr(model.config, "max_position_embeddings", None)
    limit = min(config.max_length, context) if isinstance(context, int) and context > 0 else config.max_length
    kept = [ex for ex in examples if _n_tokens(tokenizer, ex["messages"]) <= limit]
    skipped = len(examples) - len(kept)
    if not kept:
        raise ConfigError(
            f"every example is longer than {limit} tokens ({len(examples)} skipped): raise --max-length"
            + (f" (this model's context is {context} tokens)" if limit == context else "")
        )
    say(
        f"fine-tuning {Path(model_dir)} on {len(kept)} examples from {', '.join(p.name for p in paths)}"
        + (f" ({skipped} longer than {limit} tokens skipped)" if skipped else "")
    )

    import torch

    transformers, trl, peft, datasets = libs["transformers"], libs["trl"], libs["peft"], libs["datasets"]
    transformers.set_seed(config.seed)
    cuda = torch.cuda.is_available()
    dataset = datasets.Dataset.from_list([prompt_completion(ex) for ex in kept])
    # small LoRA rounds: speed over memory (transformers 5 renamed gradient to activation checkpointing)
    names = {f.name for f in dataclasses.fields(trl.SFTConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    args = trl.SFTConfig(
        **{checkpointing: False},
        output_dir=str(out),
        num_train_epochs=config.epochs,
        learning_rate=config.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        max_length=limit,
        completion_only_loss=True,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        fp16=False,
        use_cpu=not cuda,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=quiet,
        dataloader_num_workers=0,
    )
    lora = peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha or 2 * config.lora_r,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # the libraries' notices about each other's deprecations
        warnings.simplefilter("ignore", FutureWarning)
        trainer = trl.SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            eval_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora,
        )
        if quiet:  # with tqdm off, transformers prints every log line instead
            trainer.remove_callback(transformers.PrinterCallback)
        # the answer loss over every example, with the adapter's B matrices still zero (the base model)
        loss_before = float(trainer.evaluate()["eval_loss"])
        result = trainer.train()
        loss_after = float(trainer.evaluate()["eval_loss"])
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
    # the Trainer's pickled arguments: finetune.json records the settings, and no pickle is left to load
    (out / "training_args.bin").unlink(missing_ok=True)
    steps = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]

    record = {
        "base_model": str(Path(model_dir).expanduser().resolve()),
        "sources": [str(p.resolve()) for p in paths],
        "examples_read": n_read,
        "examples": len(kept),
        "skipped_too_long": skipped,
        "max_length": limit,
        "kinds": dict(Counter(str(ex["kind"]) for ex in kept if ex.get("kind") is not None)),
        "loss_before": loss_before,
        "loss_after": loss_after,
        "train_loss_first_step": steps[0] if steps else None,
        "train_loss_last_step": steps[-1] if steps else None,
        "train_loss_mean": float(result.training_loss),
        "optimizer_steps": int(result.global_step),
        "settings": attrs.asdict(config),
        "lora_target_modules": "all-linear",
        "device": "cuda" if cuda else "cpu",
        "wall_s": round(time.monotonic() - started, 3),
        "versions": _versions(libs),
    }
    (out / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    say(
        f"answer loss {loss_before:.4f} -> {loss_after:.4f} over {len(kept)} examples, "
        f"{record['optimizer_steps']} steps in {record['wall_s']:.1f}s; adapter: {out}"
    )
    return record
