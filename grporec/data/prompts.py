"""Prompt templates, character for character as MiniOneRec writes them.

RL prompts are the bare body; SFT and evaluation prompts put the Alpaca-style preamble first.
Every prompt ends with `### Response:\\n`, and the completion (an SID, then a newline) follows.
The evaluation wording of the next-item question differs from the RL wording on purpose: it is
what the published numbers were measured with. Golden tests pin all of these strings.
"""
from __future__ import annotations

BODY = "### User Input: \n{input}\n\n### Response:\n"
PREAMBLE = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request. \n\n"
    "### Instruction:\n{instruction}\n\n"
)

NEXT_ITEM_INSTRUCTION = "Can you predict the next possible item that the user may expect?"
ITEM_ID_INSTRUCTION = "Answer the question about item identification."
TITLE_HISTORY_INSTRUCTION = (
    "Based on the user's historical interaction with item titles, predict the semantic ID of "
    "the next item they may expect."
)


def compact_prompt(input_text: str) -> str:
    """The compact prompt (`data.prompt_text: compact`): the body alone, one wording for SFT, RL and
    evaluation. For from-scratch models, whose cost is per prompt token: MiniOneRec's next-item
    prompt is ~100 tokens of which ~11 are the history's SIDs; this one is the SIDs and ~10 more."""
    return BODY.format(input=input_text)


def compact_history_input(history_sids: tuple[str, ...] | list[str]) -> str:
    """The history's SIDs back to back, oldest first (each SID token is one token)."""
    return "".join(history_sids)


def compact_hinted_input(history_sids: tuple[str, ...] | list[str], hints_line: str) -> str:
    """The history's SIDs, then a line with the last item's most frequent training successors (data.successor_hints;
    `hints_line` is grporec.data.hints.SuccessorHints.line)."""
    return "".join(history_sids) + "\nhints: " + hints_line


def compact_title_input(title: str) -> str:
    return f"title: {title}"


def rl_prompt(input_text: str) -> str:
    """The RL prompt: body only."""
    return BODY.format(input=input_text)


def instruct_prompt(instruction: str, input_text: str) -> str:
    """The SFT / evaluation prompt: preamble with an instruction, then the body."""
    return PREAMBLE.format(instruction=instruction) + BODY.format(input=input_text)


def sid_history_input(history_sids: tuple[str, ...] | list[str]) -> str:
    return (
        f"The user has interacted with items {', '.join(history_sids)} in chronological order. "
        "Can you predict the next possible item that the user may expect?"
    )


def eval_sid_history_input(history_sids: tuple[str, ...] | list[str]) -> str:
    return (
        "Can you predict the next possible item the user may expect, given the following "
        f"chronological interaction history: {', '.join(history_sids)}"
    )


def title_input(title: str) -> str:
    return f"Which item has the title: {title}?"


def description_input(description: str) -> str:
    return f'An item can be described as follows: "{description}". Which item is it describing?'


def sid_to_title_input(sid: str) -> str:
    return f'What is the title of item "{sid}"?'


def title_history_input(history_titles: tuple[str, ...] | list[str]) -> str:
    quoted = ", ".join(f'"{t}"' for t in history_titles)
    return (
        f"Given the title sequence of user historical interactive items: {quoted}, "
        "can you recommend a suitable next item for the user?"
    )
