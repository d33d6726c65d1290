"""A tiny chat model built offline: a byte-level BPE tokenizer trained on the given texts and a
randomly initialised two-layer Llama, saved with ``save_pretrained``.

For tests and smoke runs of ``guidedrl finetune`` and the ``hf`` backend where no model can be
downloaded. Its answers are garbage until it is trained; it is plumbing, not advice. Needs
``transformers`` and ``tokenizers`` (the ``finetune`` extra brings both).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

#: A minimal chat template: role markers and an end-of-turn token that is also the EOS token.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]


def tiny_chat_model(
    path: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 400,
    hidden: int = 32,
    layers: int = 2,
    context: int = 4096,
    init_std: float = 0.2,
    seed: int = 0,
) -> Path:
    """Build and save a tiny chat model (tokenizer with :data:`CHAT_TEMPLATE`) into ``path``.

    ``init_std`` is wider than the usual 0.02: the tied embeddings stay frozen in a LoRA round, and at
    0.02 their logits are too small for a LoRA on the linear layers to fit anything."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        list(texts),
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown token
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|end|>", pad_token="<|pad|>", model_max_length=context
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        initializer_range=init_std,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(path)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
