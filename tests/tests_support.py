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
    base_model(len(tok)).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
