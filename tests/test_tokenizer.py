"""The char-level tokenizer: exact round trips, single-token markers, saved and reloaded."""

from transformers import AutoTokenizer

from effopd.data.arithmetic import ArithmeticSpec, generate_splits
from effopd.models.tokenizer import CHARACTERS, save_char_tokenizer
from effopd.prompts import DEFAULT_INSTRUCTION, render_prompt


def test_round_trip_on_every_task_text(char_tokenizer):
    splits = generate_splits(ArithmeticSpec(n_train=200, n_val=5, n_test=5))
    for row in splits["train"]:
        for text in (row["question"], row["solution"]):
            ids = char_tokenizer(text, add_special_tokens=False)["input_ids"]
            assert len(ids) == len(text)  # one token per character
            assert char_tokenizer.unk_token_id not in ids
            assert char_tokenizer.decode(ids) == text


def test_prompt_layout_and_single_token_markers(char_tokenizer):
    prompt = render_prompt(char_tokenizer, "Compute 2+3.")
    assert prompt == ("<|im_start|>user\nCompute 2+3.\n" + DEFAULT_INSTRUCTION
                      + "<|im_end|>\n<|im_start|>assistant\n")
    tokens = char_tokenizer.convert_ids_to_tokens(
        char_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert tokens[:3] == ["<|im_start|>", "user", "\n"]
    assert DEFAULT_INSTRUCTION in tokens and "assistant" in tokens
    assert len(tokens) == 3 + len("Compute 2+3.") + 1 + 1 + 5


def test_saved_tokenizer_reloads_identically(tmp_path, char_tokenizer):
    save_char_tokenizer(tmp_path, [DEFAULT_INSTRUCTION])
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = render_prompt(loaded, "Compute (9*9)-80.") + "9*9=81\n81-80=1\n\\boxed{1}"
    assert loaded(text)["input_ids"] == char_tokenizer(text)["input_ids"]
    assert loaded.eos_token == "<|im_end|>" and loaded.pad_token == "<|endoftext|>"
    assert len(loaded) == 4 + len(CHARACTERS) + 3


def test_unknown_character_maps_to_unk(char_tokenizer):
    ids = char_tokenizer("é", add_special_tokens=False)["input_ids"]
    assert ids == [char_tokenizer.unk_token_id]
