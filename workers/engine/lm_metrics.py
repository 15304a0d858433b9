"""Language-model metrics: perplexity, greedy-continuation exact match, canary exposure.

Works with any causal LM whose ``forward(input_ids)`` returns logits shaped ``[batch, seq, vocab]``,
or an object with ``.logits`` (transformers' ``GPT2LMHeadModel``), or a tuple whose first item is the
logits. A tokenizer is anything with ``encode(str) -> list[int]``, ``decode(list[int]) -> str`` and
``eos_id``.

Canary exposure follows Carlini et al. 2019, "The Secret Sharer": a canary is a random secret of a
fixed format (``"my secret number is ####"``, one run of digit slots), its log-perplexity is
``-log2 Pr(canary)`` under the model, and its exposure is ``log2 |R| - log2 rank`` where ``R`` is the
set of every string of the format and ``rank`` the canary's rank by log-perplexity among them (1 = the
most likely). An inserted canary the model memorised has exposure near ``log2 |R|``; one it never saw
has an expected exposure of about 1 bit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from workers.engine.objectives import logits_of

LM_EVAL_BATCH = 64  # sequences per forward pass for perplexity and greedy decoding
CANARY_BATCH = 512  # candidates per forward pass: scoring candidates is the cost of exposure
EXACT_EXPOSURE_LIMIT = 100_000  # formats with at most this many candidates are ranked exactly by default
DEFAULT_EXPOSURE_SAMPLE = 10_000
SLOT = "#"


class Tokenizer(Protocol):
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return logits_of(model(ids))


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class _EvalMode:
    """model.eval() inside, the previous training flag restored afterwards."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def _pad(seqs: list[list[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and a bool mask of the real tokens."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        mask[i, : len(s)] = True
    return ids, mask


def _token_nll(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence sum of next-token NLL (nats, float64) over predicted tokens whose target and
    context token are both real (mask)."""
    logits = _logits(model, ids)[:, :-1].float()
    targets = ids[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    keep = mask[:, 1:] & mask[:, :-1]
    return (nll.view_as(targets).double() * keep).sum(1)


@torch.inference_mode()
def perplexity(
    model: nn.Module,
    blocks: torch.Tensor | list[list[int]],
    mask: torch.Tensor | None = None,
    batch_size: int = LM_EVAL_BATCH,
) -> float | None:
    """exp(mean next-token NLL) over all blocks; None when there is no token to predict.

    ``blocks``: ``[n, seq]`` token ids (or a list of token lists, padded here); ``mask``: ``[n, seq]``,
    true on real tokens (padding is neither a target nor counted). Token ``t+1`` is predicted from
    tokens ``<= t`` of the same block.
    """
    if not isinstance(blocks, torch.Tensor):
        blocks, pad_mask = _pad([list(b) for b in blocks])
        mask = pad_mask if mask is None else mask
    if blocks.ndim != 2 or blocks.shape[0] == 0 or blocks.shape[1] < 2:
        return None
    mask = torch.ones_like(blocks, dtype=torch.bool) if mask is None else mask.bool()
    device = _device(model)
    total, count = 0.0, 0
    with _EvalMode(model):
        for i in range(0, blocks.shape[0], batch_size):
            ids, m = blocks[i : i + batch_size].to(device), mask[i : i + batch_size].to(device)
            total += _token_nll(model, ids, m).sum().item()
            count += int((m[:, 1:] & m[:, :-1]).sum().item())
    return math.exp(total / count) if count else None


@dataclass(frozen=True)
class ExactMatch:
    exact_match_rate: float | None  # fraction of evaluated documents whose whole continuation matched
    token_match_rate: float | None  # mean over evaluated documents of the matching token fraction
    per_document: list[float]  # token match fraction per evaluated document, in input order
    evaluated: int
    skipped: int  # documents shorter than prefix + continuation

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "exact_match_rate": self.exact_match_rate,
            "token_match_rate": self.token_match_rate,
            "exact_match_documents": self.evaluated,
            "exact_match_skipped": self.skipped,
        }


@torch.inference_mode()
def greedy_continuation(model: nn.Module, prefixes: torch.Tensor, steps: int) -> torch.Tensor:
    """``[n, steps]`` greedy (argmax) tokens after each prefix (all prefixes the same length)."""
    ids = prefixes
    with _EvalMode(model):
        for _ in range(steps):
            nxt = _logits(model, ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids[:, prefixes.shape[1] :]


def exact_match_rate(
    model: nn.Module,
    documents_token_ids: list[list[int]] | list[torch.Tensor],
    prefix: int = 32,
    continuation: int = 32,
    batch_size: int = LM_EVAL_BATCH,
) -> ExactMatch:
    """Greedy-decode ``continuation`` tokens after the first ``prefix`` tokens of each document and
    compare with the document's own next ``continuation`` tokens (memorisation of forgotten text)."""
    docs = [torch.as_tensor(d, dtype=torch.long).flatten() for d in documents_token_ids]
    usable = [d[: prefix + continuation] for d in docs if d.numel() >= prefix + continuation]
    skipped = len(docs) - len(usable)
    if not usable:
        return ExactMatch(None, None, [], 0, skipped)
    device = _device(model)
    per_doc: list[float] = []
    exact = 0
    for i in range(0, len(usable), batch_size):
        batch = torch.stack(usable[i : i + batch_size]).to(device)
        generated = greedy_continuation(model, batch[:, :prefix], continuation)
        hits = generated == batch[:, prefix:]
        per_doc += hits.float().mean(1).tolist()
        exact += int(hits.all(1).sum().item())
    return ExactMatch(exact / len(usable), float(np.mean(per_doc)), per_doc, len(usable), skipped)


# --- canaries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryFormat:
    """A template with one run of ``#`` digit slots: ``"my secret number is ######"``."""

    template: str

    def __post_init__(self) -> None:
        runs = list(re.finditer(re.escape(SLOT) + "+", self.template))
        if len(runs) != 1:
            raise ValueError(f"a canary format needs exactly one run of {SLOT!r} slots: {self.template!r}")

    @property
    def _span(self) -> tuple[int, int]:
        m = re.search(re.escape(SLOT) + "+", self.template)
        assert m is not None
        return m.span()

    @property
    def digits(self) -> int:
        start, end = self._span
        return end - start

    @property
    def space(self) -> int:
        """|R|: how many strings the format has."""
        return 10**self.digits

    def fill(self, value: int) -> str:
        start, end = self._span
        return self.template[:start] + str(int(value)).zfill(self.digits) + self.template[end:]

    def value_of(self, text: str) -> int:
        start, end = self._span
        secret = text[start:end]
        if len(text) != len(self.template) or not secret.isdigit() or self.fill(int(secret)) != text:
            raise ValueError(f"{text!r} is not of the format {self.template!r}")
        return int(secret)


def _format(fmt: str | CanaryFormat) -> CanaryFormat:
    return fmt if isinstance(fmt, CanaryFormat) else CanaryFormat(fmt)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def make_canaries(n: int, fmt: str | CanaryFormat, rng: np.random.Generator | int | None = None) -> list[str]:
    """``n`` distinct random secrets of the format (uniform, without replacement)."""
    f = _format(fmt)
    if n > f.space:
        raise ValueError(f"{n} canaries asked of a format with {f.space} strings")
    values = _rng(rng).choice(f.space, size=n, replace=False)
    return [f.fill(int(v)) for v in values]


def _canary_ids(tokenizer: Tokenizer, text: str, at_block_start: bool = False) -> list[int]:
    """The text's tokens after the end-of-sequence token (a document start), which is context only;
    ``at_block_start``: no context at all, as text that opens a training block is seen (packed
    blocks start with a document's first token; the first token then is context only)."""
    eos = getattr(tokenizer, "eos_id", None)
    return ([eos] if eos is not None and not at_block_start else []) + list(tokenizer.encode(text))


@torch.inference_mode()
def log_perplexities(
    model: nn.Module,
    tokenizer: Tokenizer,
    texts: list[str],
    batch_size: int = CANARY_BATCH,
    at_block_start: bool = False,
) -> np.ndarray:
    """-log2 Pr(text) under the model for each text, batched (texts of unequal token length are
    right-padded; causal attention keeps the padding out of the real tokens' predictions)."""
    device = _device(model)
    out: list[np.ndarray] = []
    with _EvalMode(model):
        for i in range(0, len(texts), batch_size):
            ids, mask = _pad([_canary_ids(tokenizer, t, at_block_start) for t in texts[i : i + batch_size]])
            nats = _token_nll(model, ids.to(device), mask.to(device))
            out.append((nats / math.log(2)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def canary_log_perplexity(model: nn.Module, tokenizer: Tokenizer, text: str) -> float:
    """Carlini et al.'s log-perplexity: -log2 Pr(text) = sum of -log2 p(token | preceding tokens)."""
    return float(log_perplexities(model, tokenizer, [text])[0])


@dataclass(frozen=True)
class Exposure:
    exposure: float  # log2|R| - log2(rank), in [0, log2|R|]
    rank: float  # 1 = the most likely string of the format; estimated (not an integer) when sampled
    space: int  # |R|
    scored: int  # candidates scored besides the canary
    exact: bool  # every candidate scored (otherwise rank is the sampling estimate)
    log_perplexity: float  # the canary's, in bits


def canary_exposure(
    model: nn.Module,
    tokenizer: Tokenizer,
    canary: str,
    fmt: str | CanaryFormat,
    candidates: list[str] | None = None,
    sample: int | None = None,
    rng: np.random.Generator | int | None = None,
    batch_size: int = CANARY_BATCH,
) -> Exposure:
    """Exposure of ``canary`` with its rank and how it was obtained.

    - ``candidates`` given: the rank among them (the canary counted once); ``|R|`` = their number.
    - otherwise, with ``sample`` None and ``|R| <= EXACT_EXPOSURE_LIMIT``: every string of the format
      is scored and ``rank = 1 + #{r != canary : logppl(r) < logppl(canary)}`` (exact, ties in the
      canary's favour).
    - otherwise ``sample`` (default ``DEFAULT_EXPOSURE_SAMPLE``) other strings of the format are drawn
      uniformly with replacement and ``rank ~= 1 + (|R| - 1) * f`` where ``f`` is the fraction of
      them with a lower log-perplexity than the canary: an unbiased estimate of the exact rank with
      standard error ``(|R| - 1) * sqrt(f (1 - f) / sample)``. Rank is clipped to ``[1, |R|]`` so
      exposure stays in ``[0, log2 |R|]``; when no sampled string beats the canary the estimate
      saturates at ``log2 |R|`` and the data only support "rank below about ``|R| / sample``",
      i.e. exposure of at least about ``log2(sample)`` bits.
    """
    f = _format(fmt)
    if candidates is not None:
        others = [c for c in candidates if c != canary]
        scores = log_perplexities(model, tokenizer, [canary, *others], batch_size)
        own, rest = scores[0], scores[1:]
        space = len(others) + 1
        rank = 1.0 + float((rest < own).sum())
        exact, scored = True, len(others)
    elif sample is None and f.space <= EXACT_EXPOSURE_LIMIT:
        return exposures(model, tokenizer, [canary], f, batch_size)[0]
    else:
        value = f.value_of(canary)
        m = DEFAULT_EXPOSURE_SAMPLE if sample is None else int(sample)
        if m < 1:
            raise ValueError("sample must be at least 1")
        draws = _rng(rng).integers(0, f.space - 1, size=m)
        draws = draws + (draws >= value)  # uniform over the other strings of the format
        scores = log_perplexities(model, tokenizer, [canary] + [f.fill(int(v)) for v in draws], batch_size)
        own, rest = scores[0], scores[1:]
        space = f.space
        rank = 1.0 + (space - 1) * float((rest < own).mean())
        exact, scored = False, m
    rank = min(max(rank, 1.0), float(space))
    return Exposure(math.log2(space) - math.log2(rank), rank, space, scored, exact, float(own))


def exposure(
    model: nn.Module,
    tokenizer: Tokenizer,
    canary: str,
    fmt: str | CanaryFormat,
    candidates: list[str] | None = None,
    sample: int | None = None,
    rng: np.random.Generator | int | None = None,
    batch_size: int = CANARY_BATCH,
) -> float:
    """Carlini et al. 2019 exposure in bits, ``log2 |R| - log2 rank`` (see ``canary_exposure``)."""
    return canary_exposure(model, tokenizer, canary, fmt, candidates, sample, rng, batch_size).exposure


def exposures(
    model: nn.Module,
    tokenizer: Tokenizer,
    canaries: list[str],
    fmt: str | CanaryFormat,
    batch_size: int = CANARY_BATCH,
    at_block_start: bool = False,
) -> list[Exposure]:
    """Exact exposure of several canaries of one format, scoring every string of the format once
    (``canary_exposure`` scores them per canary: N times the work for N canaries).
    ``at_block_start``: score them as training saw them when they opened a block (no ``<eos>``)."""
    f = _format(fmt)
    if f.space > EXACT_EXPOSURE_LIMIT:
        raise ValueError(f"exact exposure scores every string: {f.space} is above {EXACT_EXPOSURE_LIMIT}")
    scores = log_perplexities(model, tokenizer, [f.fill(v) for v in range(f.space)], batch_size, at_block_start)
    out = []
    for canary in canaries:
        own = scores[f.value_of(canary)]
        rank = 1.0 + float((scores < own).sum())  # the canary itself is not below its own score
        out.append(Exposure(math.log2(f.space) - math.log2(rank), rank, f.space, f.space - 1, True, float(own)))
    return out
