"""Every test of the gate, for a classifier or a language model, on evaluation rows only.

Each test is a dict with ``name``, ``statistic``, ``threshold``, ``comparison`` and ``passed``
(``None`` where the test does not apply, e.g. documents too short for an extraction test); the gate
passes when no test failed. A test without enough rows to decide fails: no claim without evidence.

Classifiers:
- class scope: ``class_forgetting`` (accuracy on evaluation rows of the forgotten classes);
- sample scope: ``membership_inference`` (verification/membership.py);
- both: ``utility`` (evaluation accuracy of the retained classes against the source model's) and
  ``relearn`` (verification/relearn.py).
Language models (document scope): ``lm_loss_band``, ``lm_exact_match``, ``lm_utility`` (retain
perplexity against the source's), ``relearn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.engine.lm_eval import document_tokens, set_perplexity
from workers.engine.lm_metrics import exact_match_rate
from workers.engine.metrics import mean_loss, per_sample_outputs
from workers.engine.objectives import CAUSAL_LM, CLASSIFICATION
from workers.engine.recipe import TrainingRecipe
from workers.engine.tensors import LabelledTensors
from workers.engine.verification.membership import membership_test
from workers.engine.verification.policy import VerificationPolicy
from workers.engine.verification.relearn import relearn_probe

EXACT_MATCH_DOCUMENTS = 64  # per side: greedy decoding is the slowest test
PREFIX, CONTINUATION = 32, 32


@dataclass
class GateData:
    """What the gate reads: the forget set, evaluation rows (never read by a method), and a sample of
    retained training rows (the relearn probe's company; a language model's utility is its perplexity)."""

    forget: LabelledTensors
    evaluation: LabelledTensors
    scope: str  # sample_ids | class_labels
    forget_classes: tuple[int, ...] = ()
    retain_sample: LabelledTensors | None = None
    kind: str = "classifier"

    def _rows(self, keep: torch.Tensor) -> LabelledTensors:
        return self.evaluation.subset(keep.nonzero()[:, 0].cpu())

    def forgotten_class_rows(self) -> LabelledTensors:
        return self._rows(
            torch.isin(self.evaluation.y, torch.tensor(self.forget_classes, device=self.evaluation.y.device))
        )

    def retained_rows(self) -> LabelledTensors:
        if self.scope != "class_labels":
            return self.evaluation
        return self._rows(
            ~torch.isin(self.evaluation.y, torch.tensor(self.forget_classes, device=self.evaluation.y.device))
        )

    def same_class_rows(self) -> LabelledTensors:
        """Evaluation rows of the forget set's classes: the never-seen comparison."""
        if self.kind == "language_model":
            return self.evaluation
        return self._rows(torch.isin(self.evaluation.y, torch.unique(self.forget.y).to(self.evaluation.y.device)))


def source_utility(model: nn.Module, data: GateData) -> float | None:
    """The utility figure of the source model, measured once per job and compared with every attempt's."""
    if data.kind == "language_model":
        return set_perplexity(model, data.retain_sample)
    rows = data.retained_rows()
    if len(rows) == 0:
        return None
    correct, _ = per_sample_outputs(model, rows)
    return float(correct.mean())


def verify(
    model: nn.Module,
    data: GateData,
    policy: VerificationPolicy,
    *,
    source: float | None,
    recipe: TrainingRecipe,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"passed": bool, "tests": [...]}`` for ``model``, the result of an unlearning attempt."""
    model.eval()
    if data.kind == "language_model":
        tests = [
            _lm_loss_band(model, data, policy),
            _lm_exact_match(model, data, policy),
            _lm_utility(model, data, policy, source),
        ]
        objective = CAUSAL_LM
    else:
        forgetting = _class_forgetting if data.scope == "class_labels" else _membership
        tests = [forgetting(model, data, policy, seed), _utility(model, data, policy, source)]
        objective = CLASSIFICATION
    tests.append(
        relearn_probe(
            model,
            data.forget,
            data.same_class_rows() if data.scope != "class_labels" else data.forgotten_class_rows(),
            data.retain_sample,
            recipe=recipe,
            objective=objective,
            steps=policy.relearn_steps,
            rows=policy.relearn_rows,
            margin=policy.relearn_margin,
            seed=seed,
        )
    )
    return {"passed": all(t["passed"] is not False for t in tests), "tests": tests}


def failed(verdict: dict[str, Any]) -> list[str]:
    return [t["name"] for t in verdict["tests"] if t["passed"] is False]


def _class_forgetting(model: nn.Module, data: GateData, policy: VerificationPolicy, _seed: int) -> dict[str, Any]:
    rows = data.forgotten_class_rows()
    out = _test(
        "class_forgetting",
        policy.class_max_accuracy,
        "accuracy on evaluation rows of the forgotten classes <= threshold",
    )
    out["rows"] = len(rows)
    if len(rows) == 0:
        out["note"] = "no evaluation rows of the forgotten classes: nothing to measure the forgetting on"
        return out
    correct, _ = per_sample_outputs(model, rows)
    accuracy = float(correct.mean())
    return {**out, "statistic": round(accuracy, 6), "passed": accuracy <= policy.class_max_accuracy}


def _membership(model: nn.Module, data: GateData, policy: VerificationPolicy, seed: int) -> dict[str, Any]:
    reference = data.same_class_rows()
    _, forget_losses = per_sample_outputs(model, data.forget)
    _, reference_losses = per_sample_outputs(model, reference)
    return membership_test(
        forget_losses,
        data.forget.y.cpu().numpy(),
        reference_losses,
        reference.y.cpu().numpy(),
        margin=policy.mia_margin,
        confidence=policy.confidence,
        bootstrap=policy.bootstrap_samples,
        max_rows=policy.max_rows,
        seed=seed,
    )


def _utility(model: nn.Module, data: GateData, policy: VerificationPolicy, source: float | None) -> dict[str, Any]:
    rows = data.retained_rows()
    out = _test("utility", None, "evaluation accuracy of retained classes >= source's - max drop")
    out.update(rows=len(rows), source=source, max_drop=policy.utility_max_drop)
    if len(rows) == 0 or source is None:
        out["note"] = "no evaluation rows of the retained classes"
        return out
    correct, _ = per_sample_outputs(model, rows)
    accuracy = float(correct.mean())
    threshold = round(source - policy.utility_max_drop, 6)
    return {**out, "statistic": round(accuracy, 6), "threshold": threshold, "passed": accuracy >= threshold - 1e-9}


def _lm_loss_band(model: nn.Module, data: GateData, policy: VerificationPolicy) -> dict[str, Any]:
    out = _test("lm_loss_band", policy.lm_loss_band, "|forget loss / evaluation loss - 1| <= threshold")
    forget, held_out = mean_loss(model, data.forget, CAUSAL_LM), mean_loss(model, data.evaluation, CAUSAL_LM)
    if forget is None or not held_out:
        out["note"] = "no forget or evaluation tokens to compare"
        return out
    ratio = forget / held_out
    return {
        **out,
        "statistic": round(abs(ratio - 1), 6),
        "passed": abs(ratio - 1) <= policy.lm_loss_band,
        "forget_loss": round(forget, 6),
        "evaluation_loss": round(held_out, 6),
    }


def _lm_exact_match(model: nn.Module, data: GateData, policy: VerificationPolicy) -> dict[str, Any]:
    out = _test(
        "lm_exact_match",
        policy.lm_exact_match_margin,
        "greedy token match of forget documents - of evaluation documents <= threshold",
    )
    n_positions = getattr(getattr(model, "config", None), "n_positions", None)
    if n_positions is not None and n_positions < PREFIX + CONTINUATION - 1:
        out.update(passed=None, note=f"the context ({n_positions} tokens) cannot hold {PREFIX} + {CONTINUATION}")
        return out
    rates = {}
    for name, blocks in (("forget", data.forget), ("evaluation", data.evaluation)):
        docs = document_tokens(blocks)[:EXACT_MATCH_DOCUMENTS]
        rates[name] = exact_match_rate(model, docs, PREFIX, CONTINUATION)
    forget, held_out = rates["forget"], rates["evaluation"]
    if forget.token_match_rate is None or held_out.token_match_rate is None:
        out.update(passed=None, note=f"no forget or evaluation document has {PREFIX + CONTINUATION} tokens")
        return out
    statistic = forget.token_match_rate - held_out.token_match_rate
    return {
        **out,
        "statistic": round(statistic, 6),
        "passed": statistic <= policy.lm_exact_match_margin,
        "forget_exact_match_rate": forget.exact_match_rate,
        "evaluation_exact_match_rate": held_out.exact_match_rate,
        "documents": [forget.evaluated, held_out.evaluated],
    }


def _lm_utility(model: nn.Module, data: GateData, policy: VerificationPolicy, source: float | None) -> dict[str, Any]:
    out = _test("lm_utility", None, "retain perplexity <= source's x max ratio")
    perplexity = set_perplexity(model, data.retain_sample)
    out.update(source=source, max_ratio=policy.lm_perplexity_max_ratio)
    if perplexity is None or source is None:
        out["note"] = "no retained documents to measure"
        return out
    threshold = source * policy.lm_perplexity_max_ratio
    ok = bool(np.isfinite(perplexity)) and perplexity <= threshold
    return {**out, "statistic": round(perplexity, 6), "threshold": round(threshold, 6), "passed": ok}


def _test(name: str, threshold: float | None, comparison: str) -> dict[str, Any]:
    return {"name": name, "statistic": None, "threshold": threshold, "comparison": comparison, "passed": False}
