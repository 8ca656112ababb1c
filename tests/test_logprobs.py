"""The prompt-shared log-prob forward equals the plain forward, in value and in gradient."""
import torch

from grporec.decode import SidTrie, beam_search, left_pad
from grporec.logprobs import completion_logps, full_completion_logps
from test_decode import PAD, PROMPTS, random_catalog, tiny_lm


def test_shared_prompt_forward_equals_plain_forward():
    model = tiny_lm(21)
    trie = SidTrie.build(random_catalog(21, 15) + [[11, 21, 31, 41, 5, 1]], PAD)  # one longer SID: padded rows
    ids, mask = left_pad(PROMPTS, PAD)
    r = beam_search(model, ids, mask, trie, 6)
    model.train()
    args = (r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    shared = completion_logps(model, *args, temperature=0.7)
    plain = full_completion_logps(model, *args, temperature=0.7)
    m = r.completion_mask.bool()
    torch.testing.assert_close(shared[m], plain[m], atol=1e-5, rtol=1e-5)
    weights = torch.randn(shared.shape, generator=torch.Generator().manual_seed(0)) * r.completion_mask
    g_shared = torch.autograd.grad((shared * weights).sum(), list(model.parameters()))
    g_plain = torch.autograd.grad((plain * weights).sum(), list(model.parameters()))
    for a, b in zip(g_shared, g_plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_matches_the_decoder_scores():
    model = tiny_lm(22)
    trie = SidTrie.build(random_catalog(22, 12), PAD)
    r = beam_search(model, *left_pad(PROMPTS, PAD), trie, 4)
    with torch.no_grad():
        lp = completion_logps(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    torch.testing.assert_close(lp * r.completion_mask, r.token_logps, atol=1e-5, rtol=1e-5)
