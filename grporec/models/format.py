"""Prompt formats: how a prompt and a completion become token ids, identically in every stage.

SFT, rollouts, log-probs and evaluation all turn text into ids through one `PromptFormat`, built
once from the tokenizer and `data.prompt_format`, so a model is trained and scored on the same ids:

- `alpaca` (MiniOneRec's, the default): the prompt text as is, after the special tokens the
  tokenizer itself puts first (BOS for Llama-3, Gemma, Mistral; none for Qwen); the completion
  is the answer's tokens, then the newline's tokens and EOS (EOS alone where the newline cannot
  be encoded on its own, e.g. a SentencePiece vocabulary without it).
- `chat`: the tokenizer's own chat template, one user turn holding the prompt (without the
  Alpaca `### Response:` line, whose role the template's generation prompt takes) and the
  generation prompt; the completion is the answer's tokens, then the template's end of turn.

Completions are assembled from token ids (answer, then a fixed terminator), never by tokenizing
the answer together with its terminator, so it does not matter whether a newline is one token,
several, or would merge with its neighbour. The format's name is recorded in every checkpoint
(`grporec.json`); loading a model with another format is an error naming both.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from grporec.errors import UserError

FORMATS = ("alpaca", "chat")
RECORD_FILE = "grporec.json"  # beside config.json in every model directory grporec writes
_MARK = "GRPORECCONTENTMARK"  # stands for the user's / assistant's text while a template is rendered
_RESPONSE = "\n\n### Response:\n"  # the Alpaca answer cue that ends every MiniOneRec prompt


class FormatError(UserError):
    """A prompt format the tokenizer cannot provide, or a model recorded with another format."""


@dataclass(frozen=True)
class PromptFormat:
    """Token ids around prompts and completions for one tokenizer.

    head_ids: before the prompt's text (special tokens such as BOS; for chat, the template up to
        the user's text). tail_ids: after it (for chat, the end of the user turn and the generation
        prompt). terminator_ids: after every completion's answer (newline + EOS, or the template's
        end of turn); its last id is where generation stops.
    """

    name: str
    tokenizer: PreTrainedTokenizerBase = field(repr=False, compare=False)
    head_ids: tuple[int, ...]
    tail_ids: tuple[int, ...]
    terminator_ids: tuple[int, ...]
    # data.max_prompt_tokens: every stage's prompts are cut by this one rule (None: never cut)
    max_prompt_tokens: int | None = None

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def prompt_ids(self, prompt: str, max_tokens: int | None = None) -> list[int]:
        """The prompt's ids; beyond `max_tokens` (default: the format's `max_prompt_tokens`, the same
        for SFT, rollouts, log-probs and evaluation), the text keeps its last tokens (its end holds
        the question and the most recent items) and the head and tail stay whole."""
        text = self.tokenizer.encode(chat_content(prompt) if self.name == "chat" else prompt, add_special_tokens=False)
        max_tokens = self.max_prompt_tokens if max_tokens is None else max_tokens
        if max_tokens is not None:
            room = max(0, max_tokens - len(self.head_ids) - len(self.tail_ids))
            text = text[-room:] if room else []
        return [*self.head_ids, *text, *self.tail_ids]

    def completion_ids(self, answer: str) -> list[int]:
        """The completion's ids: the answer's tokens (an SID or a title; a trailing newline, as
        MiniOneRec's texts end, is the terminator's job and dropped), then the terminator."""
        body = answer[:-1] if answer.endswith("\n") else answer
        return self.tokenizer.encode(body, add_special_tokens=False) + list(self.terminator_ids)

    def describe(self) -> str:
        t = self.tokenizer
        return (f"prompt format {self.name}: {len(self.head_ids)} token(s) before the prompt "
                f"({t.convert_ids_to_tokens(list(self.head_ids))[:4]}), completions end with "
                f"{t.convert_ids_to_tokens(list(self.terminator_ids))}")


def chat_content(prompt: str) -> str:
    """The user turn's text of an Alpaca-style prompt: the prompt without its `### Response:` cue."""
    return prompt[:-len(_RESPONSE)] if prompt.endswith(_RESPONSE) else prompt


def build_format(tokenizer: PreTrainedTokenizerBase, name: str = "alpaca", source: str = "tokenizer",
                 max_prompt_tokens: int | None = None) -> PromptFormat:
    """The `name` format for `tokenizer` (`source` names the model directory in errors); prompts
    longer than `max_prompt_tokens` keep their last tokens."""
    if tokenizer.eos_token_id is None:
        raise FormatError(f"{source}: the tokenizer has no EOS token")
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
        raise FormatError(f"data.max_prompt_tokens must be at least 1, got {max_prompt_tokens}")
    if name == "alpaca":
        return PromptFormat(name, tokenizer, tuple(_leading_special_ids(tokenizer)), (),
                            tuple(_newline_ids(tokenizer)) + (tokenizer.eos_token_id,), max_prompt_tokens)
    if name == "chat":
        head, tail, terminator = _template_parts(tokenizer, source)
        return PromptFormat(name, tokenizer, tuple(head), tuple(tail), tuple(terminator), max_prompt_tokens)
    raise FormatError(f"data.prompt_format: unknown {name!r}; choose from {list(FORMATS)}")


def _leading_special_ids(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text by itself (its BOS), found by encoding with and
    without special tokens; trailing ones (an EOS some tokenizers append) are not kept: the prompt
    goes on into the completion."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a")
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i]
    raise FormatError(f"the tokenizer's special tokens change the text's own tokens ({full} vs {plain})")


def _newline_ids(tokenizer) -> list[int]:
    """The newline's own ids, or [] where the tokenizer cannot encode one on its own."""
    ids = tokenizer.encode("\n", add_special_tokens=False)
    if not ids or tokenizer.unk_token_id in ids or "\n" not in tokenizer.decode(ids):
        return []
    return ids


def _template_parts(tokenizer, source: str) -> tuple[list[int], list[int], list[int]]:
    """(head, tail, terminator) of the chat template around one user turn and one answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise FormatError(f"{source}: data.prompt_format=chat, but the tokenizer has no chat template "
                          "(tokenizer_config.json / chat_template.jinja); use data.prompt_format=alpaca")
    user = [{"role": "user", "content": _MARK}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    whole = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": _MARK}], tokenize=False)
    if prompt.count(_MARK) != 1 or not whole.startswith(prompt.split(_MARK)[0] + _MARK) or whole.count(_MARK) != 2:
        raise FormatError(f"{source}: the chat template does not render the user's and the assistant's text once each, as given")
    head, tail = prompt.split(_MARK)  # the answer follows the generation prompt, as at inference
    terminator = whole.rsplit(_MARK, 1)[1]
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    # What ends the answer: the template's end of turn, with its trailing newline dropped (it comes after the stop token).
    end = enc(terminator.rstrip("\n")) or [tokenizer.eos_token_id]
    return enc(head), enc(tail), end


def format_for(tokenizer: PreTrainedTokenizerBase, name: str, model_dir: str | Path | None = None,
               key: str = "model.path", max_prompt_tokens: int | None = None) -> PromptFormat:
    """The format a stage uses: `name` (data.prompt_format), after checking that the model in
    `model_dir` (named by the setting `key`) was not trained with another."""
    if model_dir is not None:
        check_recorded_format(model_dir, name, key)
    return build_format(tokenizer, name, source=str(model_dir) if model_dir is not None else "tokenizer",
                        max_prompt_tokens=max_prompt_tokens)


def record_format(model_dir: str | Path, name: str) -> None:
    """Write the format's name beside a saved model (read back by `check_recorded_format`)."""
    (Path(model_dir) / RECORD_FILE).write_text(json.dumps({"prompt_format": name}) + "\n")


def recorded_format(model_dir: str | Path) -> str | None:
    path = Path(model_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["prompt_format"]
    except (ValueError, KeyError, TypeError):
        raise FormatError(f"{path}: not a grporec record (expected {{\"prompt_format\": ...}})") from None


def check_recorded_format(model_dir: str | Path, name: str, key: str = "model.path") -> None:
    """Refuse a model trained with another prompt format than `name` (one without a record, e.g.
    a pretrained base model, is accepted)."""
    saved = recorded_format(model_dir)
    if saved is not None and saved != name:
        raise FormatError(f"{key}={model_dir} was trained with data.prompt_format={saved}, but this run has "
                          f"data.prompt_format={name}: set data.prompt_format={saved} (prompts would otherwise "
                          "differ from the ones the model learnt)")
