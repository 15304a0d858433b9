"""What each unlearning method is, without running it: name, summary, scopes, model kinds, params and
whether it applies. Torch-free, so the API validates forget requests and lists methods without
importing torch; each implementation (one file per method) subclasses its spec here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Scope = Literal["sample_ids", "class_labels"]
Kind = Literal["classifier", "language_model"]

# A layer-name prefix as torch names parameters: dotted module names (``fc2``, ``layer4.1.conv2``).
LayerName = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
]

# A document's ID as text datasets allow them (workers.engine.text): printable, at most 200 characters.
DocumentId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]

LANGUAGE_MODEL_METHODS = ("gradient_ascent", "finetune", "amnesiac", "partial_amnesiac", "retrain")


class MethodParams(BaseModel):
    """Base of every method's params: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid")


class MethodNotApplicable(ValueError):
    """The method cannot serve this scope or model; the message says why and what would."""


class MethodSpec:
    """A method as the API sees it; ``workers.engine.methods.base.UnlearningMethod`` adds running it."""

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    scopes: ClassVar[frozenset[Scope]] = frozenset({"sample_ids", "class_labels"})
    needs_update_log: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = frozenset({"classifier", "language_model"})
    # why a method that does not serve language models does not, and what does
    not_for_language_models: ClassVar[str] = "it needs a classifier"

    def parse_params(self, params: dict[str, Any] | None) -> MethodParams:
        return self.Params.model_validate(params or {})

    def check_applicable(self, scope: Scope, has_update_log: bool, kind: str = "classifier") -> None:
        if kind not in self.kinds:
            if kind == "language_model":
                raise MethodNotApplicable(
                    f"{self.name} {self.not_for_language_models}; for language models use "
                    f"{', '.join(LANGUAGE_MODEL_METHODS[:-1])} or {LANGUAGE_MODEL_METHODS[-1]}"
                )
            raise MethodNotApplicable(
                f"{self.name} works only with {' or '.join(sorted(self.kinds))} models, not {kind}"
            )
        if kind == "language_model" and scope != "sample_ids":
            raise MethodNotApplicable(f"language models forget documents: scope sample_ids (document IDs), not {scope}")
        if scope not in self.scopes:
            raise MethodNotApplicable(
                f"{self.name} works only with scope {' or '.join(sorted(self.scopes))}, not {scope}"
            )
        if self.needs_update_log and not has_update_log:
            raise MethodNotApplicable(
                f"{self.name} subtracts recorded training updates, and this model was trained without an update log"
            )


# ---- params -----------------------------------------------------------------------------------


class PartialParams(MethodParams):
    """Layer-wise partial updates (seed paper 000): the same knobs for label_flip and gradient_ascent."""

    partial: bool = Field(
        False,
        description="Update only the top-p entries of each tensor, ranked by the "
        "gradient of the forget objective on the forget set (computed once, at the start).",
    )
    top_p: float = Field(0.1, gt=0, le=1, description="With partial: the fraction of each tensor that may change.")
    layers: list[LayerName] | None = Field(
        None,
        min_length=1,
        description="Change only these layers (parameter name prefixes such as fc2 or layer4); default: every layer.",
    )


class RetrainParams(MethodParams):
    seed: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Override the recipe's seed (default: the recipe's own)."
    )


class FinetuneParams(MethodParams):
    epochs: int = Field(2, ge=1, le=100, description="Passes over the retain set.")
    lr: float | None = Field(None, gt=0, le=10, description="Learning rate (default: the recipe's).")
    batch_size: int | None = Field(None, ge=1, le=65536, description="Batch size (default: the recipe's).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the batch order.")


class AmnesiacParams(MethodParams):
    repair_epochs: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Epochs of fine-tuning on the retain set after subtracting. Default: 1 if more than 1% "
        "of the recorded steps were removed, else 0 (after the paper).",
    )
    repair_lr: float | None = Field(None, gt=0, le=10, description="Repair learning rate (default: the recipe's).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the repair's batch order.")


class PartialAmnesiacParams(AmnesiacParams):
    repair_epochs: int | None = Field(0, ge=0, le=20, description="Fine-tuning epochs afterwards (default 0).")
    top_p: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Only for a model whose log is dense: prune each stored delta to its top-p entries per "
        "tensor when subtracting. A pruned log is subtracted as stored (its p was fixed when recording).",
    )


class LabelFlipParams(PartialParams):
    epochs: int = Field(3, ge=1, le=100, description="Passes over the forget set.")
    lr: float | None = Field(None, gt=0, le=10, description="Learning rate (default: the recipe's).")
    batch_size: int | None = Field(None, ge=1, le=65536, description="Batch size (default: the recipe's).")
    retain_batches: int = Field(1, ge=0, le=100, description="Retain batches after each forget batch.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the wrong labels and the batch order.")


class GradientAscentParams(PartialParams):
    layers: list[LayerName] | None = Field(
        None,
        min_length=1,
        description="Change only these layers: parameter name prefixes (fc2, layer4, transformer.h.1.mlp) "
        "or, for language models, the groups embedding (the token embedding, tied to the output layer), "
        "positions, block0..blockN, final_norm; all: every layer. Default: every layer for a classifier, "
        "the embedding for a language model.",
    )
    lr: float | None = Field(
        None,
        gt=0,
        le=100,
        description="SGD learning rate of the ascent (default 0.01; 0.5 with a classifier's "
        "first-epoch gradients, a fixed direction that tolerates longer steps; a language model's "
        "first-epoch direction is rescaled to the current gradient's norm, so 0.01 serves both).",
    )
    batch_size: int | None = Field(None, ge=1, le=65536, description="Forget batch size (default: the recipe's).")
    max_epochs: int = Field(20, ge=1, le=1000, description="Cap on passes over the forget set.")
    retain_weight: float = Field(
        1.0, ge=0, le=100, description="Weight of a cross-entropy term on a retain batch per step (0: pure ascent)."
    )
    gradients: Literal["current", "first_epoch"] = Field(
        "current", description="Ascent direction: the current gradient, or each sample's first-epoch gradient."
    )
    stop: Literal["calibrated", "max_epochs"] = Field(
        "calibrated", description="calibrated: stop at the level of unseen data; max_epochs: run the cap."
    )
    target_forget_accuracy: float = Field(
        0.0, ge=0, le=1, description="Class scope: stop once the forget-set accuracy is at or below this."
    )
    check_every: int = Field(1, ge=1, le=100_000, description="Steps between calibration checks.")
    recalibrate: bool | None = Field(
        None,
        description="Measure the held-out loss again at every check (the unseen data as the model being "
        "unlearned sees it now) instead of once at the start. Default: on for language models (an ascent "
        "also raises the loss of text the forgotten documents share with unseen ones, e.g. a template, so a "
        "fixed target is reached before the document-specific part is forgotten), off for classifiers.",
    )
    recalibrate_every: int = Field(
        1,
        ge=1,
        le=100_000,
        description="With recalibrate: steps between measurements of the held-out loss; the checks in between "
        "compare with the last one.",
    )
    calibration_samples: int = Field(
        512,
        ge=16,
        le=1_000_000,
        description="With recalibrate: the held-out loss is measured on a seeded random subset of this many "
        "held-out rows (blocks, for a language model; the whole set if smaller), from the calibration rows only.",
    )
    calibration_documents: list[DocumentId] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="Language models: held-out (test or val) documents comparable to the forgotten "
        "ones; the ascent stops at their loss level. Default: every held-out document.",
    )
    probe_samples: int = Field(
        512,
        ge=16,
        le=1_000_000,
        description="Calibration checks measure a seeded "
        "random subset of this many forget samples (the whole set if smaller).",
    )
    fuzzy_threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Also unlearn retain samples at least this cosine-similar to a forget sample (near-duplicates).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the batch order.")


class UnsirParams(MethodParams):
    noise_samples: int = Field(256, ge=1, le=4096, description="Noise inputs optimised per forget class.")
    noise_steps: int = Field(40, ge=1, le=10_000, description="Adam steps optimising the noise.")
    noise_lr: float = Field(0.1, gt=0, le=10, description="Adam learning rate for the noise.")
    noise_l2: float = Field(0.1, ge=0, le=100, description="Weight of the noise's mean squared L2 norm.")
    noise_copies: int = Field(4, ge=1, le=1000, description="Copies of each noise input in the impair set.")
    impair_noise_samples: int | None = Field(
        64,
        ge=1,
        le=4096,
        description="How many of each class's noise inputs enter the impair set, each noise_copies times (1 "
        "with 20 copies: the reference code's effective setting; null: all of them).",
    )
    use_noise: bool = Field(True, description="False: the no-noise ablation (impair on retain data only).")
    retain_per_class: int = Field(1000, ge=1, le=1_000_000, description="Retain subset size per retained class.")
    batch_size: int = Field(256, ge=1, le=65536, description="Impair and repair batch size.")
    impair_lr: float = Field(0.02, gt=0, le=10, description="Adam learning rate of the impair epoch(s).")
    impair_epochs: int = Field(1, ge=1, le=100, description="Impair epochs.")
    repair_lr: float = Field(0.01, gt=0, le=10, description="Adam learning rate of the repair epoch(s).")
    repair_epochs: int = Field(1, ge=0, le=100, description="Repair epochs.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the noise, the retain subset and the batch order.")


class SalunParams(MethodParams):
    threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Saliency mask (the paper's gamma): the fraction of all parameter entries, ranked together "
        "by |gradient| of the forget-set loss, that may change; the rest stay bit-identical.",
    )
    epochs: int = Field(1, ge=1, le=100, description="Passes over the forget set (random labels).")
    retain_ratio: float = Field(
        10.0,
        ge=0,
        le=1000,
        description="Retain rows (true labels) shuffled in with the forget rows per pass, per forget row; at "
        "most the whole retain set (the paper mixes in all of it).",
    )
    lr: float | None = Field(
        None,
        gt=0,
        le=10,
        description="Initial learning rate of SalUn's SGD (momentum 0.9, weight decay 5e-4), decaying linearly "
        "to 0 over the run. Default: 0.02 for classes, 0.01 for samples (the paper: 0.013).",
    )
    batch_size: int | None = Field(None, ge=1, le=65536, description="Batch size (default: the recipe's).")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the random labels, retain rows and batch order.")


class ScrubParams(MethodParams):
    epochs: int = Field(3, ge=1, le=100, description="Epochs: each a max pass over the forget set, then min steps.")
    max_epochs: int | None = Field(
        None,
        ge=0,
        le=100,
        description="How many of the first epochs start with a max pass (default: all; the public code: 2 of 3).",
    )
    final_max_pass: bool | None = Field(
        None,
        description="One more max pass after the last min steps, for forget rows the min steps brought back "
        "under their target. Default: on for class scope (a forgotten class must end below chance), off for "
        "sample scope (there it pushes most forget batches again: 7 test points lost on average on digits).",
    )
    optimizer: Literal["adam", "sgd"] = Field(
        "adam",
        description="adam (the public small-scale setting) bounds every step; with sgd (the public large-scale "
        "setting) the KL ascent grows exponentially and overshoots. Each phase keeps its own optimiser state.",
    )
    lr: float = Field(0.003, gt=0, le=10, description="Learning rate of both phases.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (optimizer=sgd only).")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="L2 penalty, as in the public code.")
    temperature: float = Field(4.0, gt=0, le=100, description="Softmax temperature T of both KL terms.")
    alpha: float = Field(0.001, ge=0, le=100, description="Min steps: weight of KL(teacher || student) on retain rows.")
    gamma: float = Field(0.99, ge=0, le=100, description="Min steps: weight of the retain rows' cross-entropy.")
    forget_batch_size: int = Field(32, ge=1, le=65536, description="Forget rows per max step.")
    retain_batch_size: int = Field(64, ge=1, le=65536, description="Retain rows per min step.")
    retain_per_forget: float = Field(
        1.5,
        ge=0,
        le=1000,
        description="Min steps per epoch: this many retain rows per forget row, at most the whole retain set "
        "(the public code runs a whole retain epoch). Tied to the forget set, so the two phases keep their "
        "balance however large the retain set is, and the cost stays a small share of a retrain.",
    )
    first_step: Literal["cross_entropy_ascent", "none"] = Field(
        "cross_entropy_ascent",
        description="The student starts equal to the teacher, where the KL gradient is zero (to rounding): the "
        "first max step ascends the forget rows' cross-entropy instead. none: KL from the start (public code).",
    )
    calibrated: bool = Field(
        True,
        description="A forget row takes part in max steps only until it reaches its target: class scope, per "
        "row, the label's probability at or below chance (1 / classes); sample scope, per batch, the mean "
        "loss at the held-out loss of the forget set's classes. false: every row, every max step (public).",
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the batch order.")

    @model_validator(mode="after")
    def _max_epochs_within_epochs(self) -> ScrubParams:
        if self.max_epochs is not None and self.max_epochs > self.epochs:
            raise ValueError(f"max_epochs ({self.max_epochs}) cannot exceed epochs ({self.epochs})")
        return self


# ---- specs (the implementations: workers/engine/methods/<name>.py) ----------------------------


class RetrainSpec(MethodSpec):
    name = "retrain"
    summary = "Train from scratch on the retain set with the model's recipe (exact; the reference)."
    Params = RetrainParams


class FinetuneSpec(MethodSpec):
    name = "finetune"
    summary = "Continue training on the retain set for a few epochs (baseline)."
    Params = FinetuneParams


class AmnesiacSpec(MethodSpec):
    name = "amnesiac"
    summary = "Subtract the recorded updates of every training step that saw a forget sample (needs an update log)."
    Params = AmnesiacParams
    needs_update_log = True


class PartialAmnesiacSpec(MethodSpec):
    name = "partial_amnesiac"
    summary = (
        "Amnesiac with layer-wise pruned updates: subtract only the top-p entries per tensor (needs an update log)."
    )
    Params = PartialAmnesiacParams
    needs_update_log = True


class LabelFlipSpec(MethodSpec):
    name = "label_flip"
    summary = "Train on the forget set with random wrong labels, interleaved with retain batches (+ partial)."
    Params = LabelFlipParams
    kinds = frozenset({"classifier"})
    not_for_language_models = "trains on random wrong class labels and needs a classifier"


class GradientAscentSpec(MethodSpec):
    name = "gradient_ascent"
    summary = "Ascend the forget-set loss (current or first-epoch gradients) until it reaches unseen-data level."
    Params = GradientAscentParams


class UnsirSpec(MethodSpec):
    name = "unsir"
    summary = "UNSIR: error-maximising noise per forgotten class, then impair and repair (class scope only)."
    Params = UnsirParams
    scopes = frozenset({"class_labels"})
    kinds = frozenset({"classifier"})
    not_for_language_models = "forgets classes and needs a classifier"


class SalunSpec(MethodSpec):
    name = "salun"
    summary = "SalUn: random labels on the forget set, mixed with retain rows, updating only the salient weights."
    Params = SalunParams
    kinds = frozenset({"classifier"})
    not_for_language_models = "trains on random class labels and needs a classifier"


class ScrubSpec(MethodSpec):
    name = "scrub"
    summary = (
        "SCRUB: a student moves away from the frozen source model (the teacher) on the forget set and "
        "stays close to it on the retain set."
    )
    Params = ScrubParams
    kinds = frozenset({"classifier"})
    not_for_language_models = "distils class outputs and needs a classifier"


SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        RetrainSpec(),
        FinetuneSpec(),
        AmnesiacSpec(),
        PartialAmnesiacSpec(),
        LabelFlipSpec(),
        GradientAscentSpec(),
        UnsirSpec(),
        SalunSpec(),
        ScrubSpec(),
    )
}


def get_spec(name: str) -> MethodSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(SPECS)}") from None
