"""LLM fine-tuning data (ACE §4.4): accepted actor and critic exchanges as chat-format JSONL.

Each line is ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}], "kind": ...}``,
the conversational format TRL's ``SFTTrainer`` reads (``datasets.load_dataset("json", ...)``). The
user message holds what the LLM was shown (task, state in words, the state's JSON, the bad case and
the simulator's feedback of earlier rounds); the assistant message the accepted answer as JSON. Only
accepted exchanges are written: an actor proposal the simulator confirmed, a critic answer whose
levels were all in {±1, ±2}.

The LoRA round on this file is ``guidedrl finetune RUN_DIR --model MODEL_DIR --out ADAPTER_DIR``
(core, ``guidedrl.llm.finetune``; the ``finetune`` extra: trl + peft), and the next run asks the
tuned model through ``--llm hf --set llm.options.lora=ADAPTER_DIR``; see the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guidedrl.llm.jsondata import jsonable

from guidedrl_ace.state import AceState

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.types import Episode

FILENAME = "ace_finetune.jsonl"


def path_of(ctx: RunContext) -> Path:
    return Path(ctx.run_dir) / FILENAME


def chat(system: str, user: str, assistant: Any, kind: str) -> dict[str, Any]:
    """One conversational SFT example."""
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": json.dumps(assistant, default=jsonable)},
        ],
        "kind": kind,
    }


def write(path: str | Path, examples: list[dict[str, Any]]) -> int:
    """Append ``examples`` to a JSONL file; returns how many lines were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex, default=jsonable, ensure_ascii=False) + "\n")
    return len(examples)


def read(path: str | Path) -> list[dict[str, Any]]:
    """The examples of a JSONL file (for checks and for the next round's trainer)."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _system(ctx: RunContext) -> str:
    return str(getattr(ctx.adapter, "task", "") or "Choose good actions.")


def append_actor(
    ctx: RunContext, st: AceState, desc: Any, bad: Any, action: int, feedback: list[str], r_llm: float
) -> None:
    vocab = ctx.adapter.vocabulary
    user = "\n\n".join(
        part
        for part in (
            desc.text,
            vocab.prompt_text() if hasattr(vocab, "prompt_text") else "",
            "State:\n```json\n" + json.dumps(desc.state, default=jsonable) + "\n```",
            f"The action {json.dumps(vocab.to_json(bad), default=jsonable)} was judged sub-optimal in this state; "
            "choose a different, better action.",
            "\n".join(feedback),
        )
        if part
    )
    answer = {"action": vocab.to_json(action), "reason": f"simulated reward {r_llm:.3f}, better than the bad action"}
    st.exported += write(path_of(ctx), [chat(_system(ctx), user, answer, "actor")])


def append_critic(ctx: RunContext, st: AceState, episode: Episode, keys: list[int], levels: dict[int, float]) -> None:
    vocab = ctx.adapter.vocabulary
    lines = []
    for t in range(len(episode)):
        desc = ctx.adapter.describe(episode.obs[t])
        lines.append(f"t={t}: {desc.text}; action {json.dumps(vocab.to_json(episode.act[t]), default=jsonable)}; reward {float(episode.rew[t]):g}")
    user = "\n".join(lines) + f"\n\nKey steps: {keys}. Reassign each key step's reward: a level in -2, -1, 1, 2."
    answer = {"rewards": [{"t": int(t), "level": int(round(v))} for t, v in sorted(levels.items())]}
    st.exported += write(path_of(ctx), [chat(_system(ctx), user, answer, "critic")])
