"""``guidedrl finetune``: reading chat JSONL, the errors a user meets, the missing extra, a light CLI,
and a real LoRA round on a tiny model the test builds itself (no download) whose answer loss falls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from guidedrl.cli import main
from guidedrl.errors import ConfigError, GuidedRLError, RunFileError
from guidedrl.llm.finetune import (
    EXTRA,
    FinetuneConfig,
    FinetuneExtraMissing,
    find_sources,
    finetune,
    load_examples,
    prompt_completion,
)
from guidedrl_ace.finetune import chat, write

SYSTEM = "Balance the pole on the cart."


def examples(n: int = 8) -> list[dict]:
    """``n`` distinct ACE-style actor exchanges (what ``ace_finetune.jsonl`` holds)."""
    out = []
    for i in range(n):
        angle = (i - n / 2) / 20
        user = f"The pole leans {'right' if angle > 0 else 'left'} at angle {angle:.2f}. Which action?"
        out.append(chat(SYSTEM, user, {"action": int(angle > 0), "reason": f"push {'right' if angle > 0 else 'left'}"}, "actor"))
    return out


def corpus(exs: list[dict]) -> list[str]:
    """The tokenizer's training text: every message, many times over."""
    return [m["content"] for ex in exs for m in ex["messages"]] * 20


# -- reading the data (no trl needed) ---------------------------------------------------------------


def test_a_run_directory_gives_every_finetune_jsonl_and_a_file_gives_itself(tmp_path):
    write(tmp_path / "ace_finetune.jsonl", examples(3))
    write(tmp_path / "other_finetune.jsonl", examples(2))
    (tmp_path / "llm_calls.jsonl").write_text("{}\n")
    paths = find_sources(tmp_path)
    assert [p.name for p in paths] == ["ace_finetune.jsonl", "other_finetune.jsonl"]
    assert find_sources(paths[0]) == [paths[0]]
    loaded = load_examples(paths)
    assert len(loaded) == 5 and {ex["kind"] for ex in loaded} == {"actor"}
    pair = prompt_completion(loaded[0])
    assert [m["role"] for m in pair["prompt"]] == ["system", "user"]
    assert [m["role"] for m in pair["completion"]] == ["assistant"]
    assert json.loads(pair["completion"][0]["content"])["action"] in (0, 1)


def test_missing_empty_and_malformed_data_each_say_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        find_sources(tmp_path / "nope")
    with pytest.raises(RunFileError, match=r"no fine-tuning data \(no \*finetune\*\.jsonl file\).*--methods ace"):
        find_sources(tmp_path)
    empty = tmp_path / "empty_finetune.jsonl"
    empty.write_text("\n")
    with pytest.raises(RunFileError, match="no examples"):
        load_examples([empty])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(examples(1)[0]) + "\n{not json\n")
    with pytest.raises(RunFileError, match=r"bad\.jsonl:2: not JSON"):
        load_examples([bad])
    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(RunFileError, match="ends with the assistant's answer"):
        load_examples([no_answer])
    wrong_role = tmp_path / "role.jsonl"
    wrong_role.write_text(json.dumps({"messages": [{"role": "tool", "content": "x"}]}) + "\n")
    with pytest.raises(RunFileError, match="role in system, user, assistant"):
        load_examples([wrong_role])


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="lora_r must be > 0"):
        FinetuneConfig(lora_r=0)
    with pytest.raises(ConfigError, match="epochs must be > 0"):
        FinetuneConfig(epochs=-1)


def test_without_the_extra_the_cli_says_which_pip_install_in_one_line(tmp_path, monkeypatch, capsys):
    write(tmp_path / "ace_finetune.jsonl", examples(2))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "trl", None)  # makes `import trl` fail
    with pytest.raises(FinetuneExtraMissing, match=r"pip install 'guidedrl\[finetune\]'") as info:
        finetune(tmp_path, tmp_path / "model", tmp_path / "adapter")
    assert isinstance(info.value, GuidedRLError) and EXTRA in str(info.value)
    code = main(["finetune", str(tmp_path), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'guidedrl[finetune]'" in err
    assert "Traceback" not in err


def test_a_folder_that_is_not_a_model_and_a_used_out_dir_are_refused(tmp_path):
    write(tmp_path / "run" / "ace_finetune.jsonl", examples(2))
    (tmp_path / "notmodel").mkdir()
    with pytest.raises(ConfigError, match="not a Hugging Face model directory"):
        finetune(tmp_path / "run", tmp_path / "notmodel", tmp_path / "adapter")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty.*--overwrite"):
        finetune(tmp_path / "run", tmp_path / "notmodel", tmp_path / "used")


def test_help_imports_neither_torch_nor_trl():
    probe = (
        "import sys, contextlib, io\nfrom guidedrl.cli import main\n"
        "for argv in (['--help'], ['finetune', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try: main(argv)\n"
        "        except SystemExit: pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trl', 'peft', 'transformers', 'datasets'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# -- a real round on a tiny model -------------------------------------------------------------------


@pytest.mark.slow
def test_a_lora_round_on_a_tiny_model_learns_the_answers_and_writes_its_record(tmp_path, capsys):
    from guidedrl.llm.tinymodel import tiny_chat_model

    exs = examples(8)
    write(tmp_path / "run" / "ace_finetune.jsonl", exs)
    model = tiny_chat_model(tmp_path / "base", corpus(exs))
    out = tmp_path / "adapter"
    argv = ["finetune", str(tmp_path / "run"), "--model", str(model), "--out", str(out),
            "--epochs", "15", "--lr", "1e-2", "--lora-r", "8", "--batch-size", "8", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "answer loss" in printed and "--llm hf --set llm.options.lora=" in printed
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    record = json.loads((out / "finetune.json").read_text())
    assert record["examples"] == 8 and record["kinds"] == {"actor": 8} and record["skipped_too_long"] == 0
    assert record["base_model"] == str(model.resolve()) and record["device"] in ("cpu", "cuda")
    # a real learning check: the 8 answers are overfitted
    assert record["loss_after"] < 0.5 * record["loss_before"], record
    assert record["train_loss_last_step"] < record["train_loss_first_step"]
    assert record["optimizer_steps"] == 15  # 15 epochs of one batch of 8
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))  # no pickles
    # the adapter directory is not overwritten by accident
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_examples_longer_than_max_length_are_skipped_and_counted(tmp_path):
    from guidedrl.llm.tinymodel import tiny_chat_model

    exs = examples(4)
    long = chat(SYSTEM, "x " * 400, {"action": 0}, "actor")
    write(tmp_path / "data.jsonl", [*exs, long])
    model = tiny_chat_model(tmp_path / "base", corpus(exs))
    record = finetune(tmp_path / "data.jsonl", model, tmp_path / "a", FinetuneConfig(epochs=1, max_length=128), quiet=True)
    assert record["examples_read"] == 5 and record["examples"] == 4 and record["skipped_too_long"] == 1
    assert record["max_length"] == 128
    with pytest.raises(ConfigError, match="every example is longer than 8 tokens.*raise --max-length"):
        finetune(tmp_path / "data.jsonl", model, tmp_path / "b", FinetuneConfig(max_length=8), quiet=True)
    record = finetune(tmp_path / "data.jsonl", model, tmp_path / "c", FinetuneConfig(epochs=1, max_examples=2), quiet=True)
    assert record["examples_read"] == 5 and record["examples"] <= 2
