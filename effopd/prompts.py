"""Prompts as the paper builds them: the problem, then the instruction, in the chat template."""

from __future__ import annotations

from typing import Any

# The paper's instruction (SPEC section 5); the config's ``prompt.instruction`` defaults to it.
DEFAULT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def user_message(problem: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The user turn: the problem, a newline, then the instruction."""
    return f"{problem}\n{instruction}" if instruction else problem


def render_prompt(tokenizer: Any, problem: str, instruction: str = DEFAULT_INSTRUCTION,
                  enable_thinking: bool = False) -> str:
    """Render one prompt through the tokenizer's own chat template.

    ``enable_thinking`` is passed to the template as Qwen3's templates expect
    (False = non-thinking mode); templates that do not use it ignore it.
    """
    messages = [{"role": "user", "content": user_message(problem, instruction)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         enable_thinking=enable_thinking)
