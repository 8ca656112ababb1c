"""The prompt-shared log-prob forward equals the plain forward, in value and in gradient."""
import pytest
import torch
from transformers import AttentionInterface

from grporec.decode import SidTrie, beam_search, left_pad
from grporec.models import attention as kv
from grporec.logprobs import completion_logps, full_completion_logps
from test_decode import PAD, PROMPTS, random_catalog, tiny_lm


@pytest.fixture
def shared_calls():
    """The query shape of every shared-prefix attention call made during the test."""
    calls = []

    def counted(*a, **k):
        calls.append(a[1].shape)
        return kv.shared_prefix_attention(*a, **k)

    AttentionInterface.register(kv.SHARED_PREFIX_ATTENTION, counted)
    yield calls
    AttentionInterface.register(kv.SHARED_PREFIX_ATTENTION, kv.shared_prefix_attention)


@pytest.mark.parametrize("arch", ["qwen2", "llama", "qwen3"])
@pytest.mark.parametrize("shared", [True, False], ids=["prefix_shared_attention", "kv_copies"])
def test_shared_prompt_forward_equals_plain_forward(arch, shared, shared_calls):
    """Either training forward (the prompt KV read once by prefix-shared attention, or copied to the G
    rows) equals one plain forward over prompt + completion per row, in value and in gradient,
    with left-padded prompts and right-padded completions (the one longer SID pads the others)."""
    model = tiny_lm(21, arch)
    trie = SidTrie.build(random_catalog(21, 15) + [[11, 21, 31, 41, 5, 1]], PAD)
    ids, mask = left_pad(PROMPTS, PAD)
    r = beam_search(model, ids, mask, trie, 6)
    assert not r.completion_mask.all()  # padded completion rows are in the test
    model.train()
    shared_calls.clear()  # the decoder's
    args = (r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    got = completion_logps(model, *args, temperature=0.7, shared_prefix=shared)
    assert len(shared_calls) == (model.config.num_hidden_layers if shared else 0)  # one completion forward per layer
    assert model.config._attn_implementation == "sdpa"  # restored
    plain = full_completion_logps(model, *args, temperature=0.7)
    m = r.completion_mask.bool()
    torch.testing.assert_close(got[m], plain[m], atol=1e-5, rtol=1e-5)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(0)) * r.completion_mask
    g_got = torch.autograd.grad((got * weights).sum(), list(model.parameters()))
    g_plain = torch.autograd.grad((plain * weights).sum(), list(model.parameters()))
    for a, b in zip(g_got, g_plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_default_training_forward_is_prefix_shared_where_supported():
    from grporec.models.attention import supports_shared_prefix

    model = tiny_lm(24).train()
    assert supports_shared_prefix(model)
    model.config.attention_dropout = 0.1  # shared-prefix attention has no dropout: the copy path then
    assert not supports_shared_prefix(model)
    assert supports_shared_prefix(model.eval())  # no dropout outside training


def test_matches_the_decoder_scores():
    model = tiny_lm(22)
    trie = SidTrie.build(random_catalog(22, 12), PAD)
    r = beam_search(model, *left_pad(PROMPTS, PAD), trie, 4)
    with torch.no_grad():
        lp = completion_logps(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    torch.testing.assert_close(lp * r.completion_mask, r.token_logps, atol=1e-5, rtol=1e-5)


def _naive(logits, tokens, T):
    return (logits.float() / T).log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def test_the_chunked_head_equals_log_softmax_and_gather_in_value_and_gradient():
    from grporec.logprobs import token_logps

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 3, 37, generator=g) * 4).requires_grad_(True)
    tokens = torch.randint(0, 37, (5, 3), generator=g)
    weights = torch.randn(5, 3, generator=g)
    for T in (1.0, 0.7):
        # 37 * 4 elements per chunk = 4 rows of 37: the 15 rows go as 4 + 4 + 4 + 3, a short last chunk
        fused = token_logps(logits, tokens, T, chunk_elements=37 * 4)
        naive = _naive(logits, tokens, T)
        torch.testing.assert_close(fused, naive, atol=1e-6, rtol=1e-6)
        (g_fused,) = torch.autograd.grad((fused * weights).sum(), logits)
        (g_naive,) = torch.autograd.grad((naive * weights).sum(), logits)
        torch.testing.assert_close(g_fused, g_naive, atol=1e-6, rtol=1e-5)
    x = torch.randn(4, 2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: token_logps(z, tokens[:4, :2] % 9, 0.7, chunk_elements=18), (x,))


def test_the_chunked_head_on_bf16_logits_is_the_fp32_value_of_those_logits():
    from grporec.logprobs import token_logps

    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(6, 2, 50, generator=g) * 3).to(torch.bfloat16)
    tokens = torch.randint(0, 50, (6, 2), generator=g)
    out = token_logps(logits, tokens, chunk_elements=50 * 5)  # 5 rows a chunk: the chunked path
    assert out.dtype == torch.float32  # computed in fp32 from the bf16 values, not in bf16
    torch.testing.assert_close(out, _naive(logits, tokens, 1.0), atol=1e-6, rtol=1e-6)
    logits.requires_grad_(True)
    (grad,) = torch.autograd.grad(token_logps(logits, tokens, chunk_elements=50 * 5).sum(), logits)
    assert grad.dtype == torch.bfloat16  # the gradient comes back in the logits' own dtype
    # each row's gradient is onehot - softmax: it sums to 0 over the vocabulary (to bf16 rounding)
    torch.testing.assert_close(grad.float().sum(-1), torch.zeros(6, 2), atol=2e-2, rtol=0)
