"""Helpers shared by tests (not fixtures): stand-ins for models from outside grporec."""
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


def base_tokenizer() -> PreTrainedTokenizerFast:
    """A Qwen-like byte-level BPE tokenizer with no SID tokens (stands in for a hub model's)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["which item has the title", "a_1 b_2 <> c_3 \n\n### Response:\n"] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def base_model(vocab_size: int) -> Qwen2ForCausalLM:
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))


def save_model_without_sid_tokens(out: Path) -> Path:
    tok = base_tokenizer()
    tok.pad_token = tok.eos_token
    return save_base_model(tok, out)


def bos_tokenizer() -> PreTrainedTokenizerFast:
    """The byte-level BPE above, with a post-processor that puts BOS `<s>` first (as Llama-3's,
    Gemma's and Mistral's tokenizers do)."""
    from tokenizers import processors

    tok = base_tokenizer().backend_tokenizer
    tok.add_special_tokens(["<s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<s>", pad_token="<|endoftext|>")


def unigram_tokenizer(texts: list[str], newline: bool = True) -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer (Unigram, Metaspace `▁`, BOS first, `<unk>`), trained here.

    With newline=False it learns no newline (texts are trained with spaces instead), so a newline
    encodes to `<unk>` and completions must end with EOS alone."""
    from tokenizers import processors

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], unk_token="<unk>",
                                      show_progress=False)
    tok.train_from_iterator(texts if newline else [t.replace("\n", " ") for t in texts], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>")


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chat_tokenizer() -> PreTrainedTokenizerFast:
    """A Qwen-Instruct-like tokenizer: ChatML special tokens and template, EOS `<|im_end|>`."""
    tok = base_tokenizer().backend_tokenizer
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = CHATML
    return hf


def save_base_model(tok: PreTrainedTokenizerFast, out: Path) -> Path:
    """A pretrained-model stand-in: a small Qwen2 model for `tok`'s vocabulary, saved with it."""
    base_model(len(tok)).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
