"""Language-model metrics on a tiny GPT-2 that memorises one document and one canary."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from workers.engine.architectures.gpt2 import build_gpt2
from workers.engine.lm_metrics import (
    CanaryFormat,
    canary_exposure,
    canary_log_perplexity,
    exact_match_rate,
    exposure,
    exposures,
    log_perplexities,
    make_canaries,
    perplexity,
)
from workers.engine.text import ByteTokenizer

pytest.importorskip("transformers")


TOK = ByteTokenizer()
FMT = "my secret number is ####"
MEMORISED = "The quick brown fox jumps over the lazy dog while five wizards box the jumping quails."
UNSEEN = "Pack my box with five dozen liquor jugs; sphinx of black quartz, judge my vow, then leave."
INSERTS = 8  # copies of the canary among the training documents


def _tiny_lm() -> nn.Module:
    torch.manual_seed(0)
    return build_gpt2({"n_layer": 2, "n_head": 2, "n_embd": 64, "context_length": 128}, TOK.vocab_size)


def _doc(text: str) -> list[int]:
    return [TOK.eos_id, *TOK.encode(text), TOK.eos_id]


def _train(model: nn.Module, texts: list[str], steps: int, lr: float = 5e-3) -> nn.Module:
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(_doc(t)) for t in texts], batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(_doc(t)), dtype=torch.bool) for t in texts], True)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        logits = model(ids).logits[:, :-1]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        loss = (loss * mask[:, 1:].reshape(-1)).sum() / mask[:, 1:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def canary() -> str:
    return make_canaries(1, FMT, np.random.default_rng(7))[0]


@pytest.fixture(scope="module")
def trained(canary) -> nn.Module:
    return _train(_tiny_lm(), [MEMORISED, *[canary] * INSERTS], steps=100)


def test_untrained_perplexity_is_of_the_vocabulary_size():
    ppl = perplexity(_tiny_lm(), [_doc(MEMORISED), _doc(UNSEEN)])
    assert 0.5 * TOK.vocab_size < ppl < 2 * TOK.vocab_size


def test_memorised_text_perplexity_drops_and_held_out_stays_high(trained):
    assert perplexity(trained, [_doc(MEMORISED)]) < 2
    assert perplexity(trained, [_doc(UNSEEN)]) > 20


def test_perplexity_ignores_padding_and_restores_training_mode(trained):
    trained.train()
    alone = perplexity(trained, torch.tensor([_doc(MEMORISED)]))
    padded = torch.tensor([_doc(MEMORISED) + [0] * 20])
    mask = torch.zeros_like(padded, dtype=torch.bool)
    mask[0, : len(_doc(MEMORISED))] = True
    assert perplexity(trained, padded, mask) == pytest.approx(alone, rel=1e-5)
    assert perplexity(trained, [_doc(MEMORISED), _doc(UNSEEN)[:30]]) > alone  # list input, padded here
    assert trained.training
    assert perplexity(trained, [[1]]) is None


def test_exact_match_on_memorised_and_unseen_documents(trained):
    result = exact_match_rate(trained, [_doc(MEMORISED), _doc(UNSEEN), _doc("too short")])
    assert (result.evaluated, result.skipped) == (2, 1)
    assert result.per_document[0] == 1.0
    assert result.per_document[1] < 0.2
    assert result.exact_match_rate == 0.5
    assert exact_match_rate(trained, [_doc(MEMORISED)]).exact_match_rate == 1.0
    assert exact_match_rate(trained, [_doc(UNSEEN)]).exact_match_rate == 0.0
    assert exact_match_rate(trained, [[1, 2, 3]]).as_dict()["exact_match_rate"] is None


def test_logits_plain_tensor_models_are_accepted(trained):
    class Plain(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids):
            return self.inner(ids).logits

    class Tuple(Plain):
        def forward(self, ids):
            return (self.inner(ids).logits, SimpleNamespace())

    ref = perplexity(trained, [_doc(UNSEEN)])
    assert perplexity(Plain(trained), [_doc(UNSEEN)]) == pytest.approx(ref, rel=1e-6)
    assert perplexity(Tuple(trained), [_doc(UNSEEN)]) == pytest.approx(ref, rel=1e-6)


def test_canary_format_and_generation():
    f = CanaryFormat(FMT)
    assert (f.digits, f.space, f.fill(42)) == (4, 10_000, "my secret number is 0042")
    assert f.value_of("my secret number is 0042") == 42
    canaries = make_canaries(50, FMT, np.random.default_rng(0))
    assert len(set(canaries)) == 50 and all(f.value_of(c) >= 0 for c in canaries)
    assert canaries == make_canaries(50, FMT, np.random.default_rng(0))
    for bad in ("no slots", "two # runs #"):
        with pytest.raises(ValueError):
            CanaryFormat(bad)
    with pytest.raises(ValueError):
        f.value_of("my secret number is 12a4")


def test_canary_log_perplexity_is_bits_and_batching_agrees(trained, canary):
    lp = canary_log_perplexity(trained, TOK, canary)
    texts = [canary, "my secret number is 0000", "something else, longer than the canary"]
    batched = log_perplexities(trained, TOK, texts, batch_size=2)
    one_by_one = [canary_log_perplexity(trained, TOK, t) for t in texts]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-4)
    assert batched[0] == pytest.approx(lp, rel=1e-4)
    nats = perplexity(trained, [_doc(canary)[:-1]])  # exp(mean nat NLL) over the same tokens
    assert lp == pytest.approx(math.log2(nats) * len(TOK.encode(canary)), rel=1e-4)


def test_inserted_canary_is_exposed_and_a_fresh_one_is_not(trained, canary):
    log2_space = math.log2(10_000)
    inserted = canary_exposure(trained, TOK, canary, FMT)
    assert inserted.exact and inserted.space == 10_000 and inserted.scored == 9_999
    assert inserted.exposure >= 0.8 * log2_space
    fresh = [c for c in make_canaries(5, FMT, np.random.default_rng(1)) if c != canary]
    exposures = [exposure(trained, TOK, c, FMT) for c in fresh]
    assert np.median(exposures) < 5
    assert all(0 <= e <= log2_space for e in exposures)


def test_sampled_exposure_agrees_with_exact_rank(trained, canary):
    # rank ~= 1 + (|R| - 1) f from m = 2,000 samples. At a true rank r (p = r / |R|) the relative
    # standard error of the estimate is sqrt((1 - p) / (p m)): 0.05 bits at r = |R| / 2, 0.09 bits at
    # r = 1,000 (the fresh canaries here rank above that; the memorised one's rank 1 the estimate
    # reproduces exactly, f = 0). Tolerance: 0.25 bits, over two standard errors at r = 1,000.
    f = CanaryFormat(FMT)
    scores = log_perplexities(trained, TOK, [f.fill(v) for v in range(f.space)])
    for c in [canary, *make_canaries(4, FMT, np.random.default_rng(3))]:
        own = scores[f.value_of(c)]
        exact_rank = 1 + int((scores < own).sum())
        exact = math.log2(f.space) - math.log2(exact_rank)
        sampled = canary_exposure(trained, TOK, c, FMT, sample=2_000, rng=np.random.default_rng(0))
        assert not sampled.exact and sampled.scored == 2_000
        assert abs(sampled.exposure - exact) < 0.25, (c, exact_rank, sampled.rank)


def test_exposure_over_explicit_candidates(trained, canary):
    f = CanaryFormat(FMT)
    others = [f.fill(v) for v in range(0, 10_000, 97)]
    result = canary_exposure(trained, TOK, canary, FMT, candidates=[canary, *others])
    assert result.space == len({canary, *others})
    assert result.rank == 1 and result.exposure == pytest.approx(math.log2(result.space))


def test_exposures_of_many_canaries_score_the_format_once_and_agree_with_one_at_a_time(trained, canary):
    others = make_canaries(3, FMT, np.random.default_rng(5))
    together = exposures(trained, TOK, [canary, *others], FMT)
    one_by_one = [canary_exposure(trained, TOK, c, FMT) for c in [canary, *others]]
    assert [t.rank for t in together] == [o.rank for o in one_by_one]
    assert [t.exposure for t in together] == pytest.approx([o.exposure for o in one_by_one])
    assert together[0].exposure >= 0.8 * math.log2(10_000)
