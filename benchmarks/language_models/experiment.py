"""One run: train the original language model with the update recorder, then let every method forget
the same canary documents, and measure each result the same way (retrain is the reference)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.language_models.corpus import Corpus, build
from benchmarks.language_models.profiles import ALL_LAYERS, Profile, Variant
from workers.engine.architectures import build_model
from workers.engine.lm_eval import lm_verification
from workers.engine.lm_metrics import exposures
from workers.engine.log_store import DirectoryLogStore
from workers.engine.methods import UnlearningTask, get_method
from workers.engine.objectives import CAUSAL_LM
from workers.engine.recorder import Observers, UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.text import ByteTokenizer, lm_tensors, pack_dataset
from workers.engine.training import seed_everything, train
from workers.engine.update_log import LogCoverage, ManifestReader, RecorderConfig

log = logging.getLogger(__name__)
DEVICE = torch.device("cpu")


class ForgottenDocumentGradients:
    """First-epoch gradients of *every* parameter, for the documents a request will name only.

    The service records first-epoch gradients of chosen layers for every document (the embedding by
    default); recording every layer for a whole corpus would take (parameters x 2 bytes) per
    document and step. The benchmark still wants the all-layer first-epoch variant, so this step
    observer keeps them for the forgotten documents alone and serves them through the same
    ``first_epoch_gradients(ids)`` call the update-log reader answers."""

    def __init__(self, data: LabelledTensors, doc_ids: list[str]):
        self.data, self.wanted = data, set(doc_ids)
        self.grads: dict[str, dict[str, torch.Tensor]] = {}

    def before_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None:
        if epoch:
            return
        ids = [self.data.ids[i] for i in rows.tolist()]
        params = dict(model.named_parameters())
        for doc in sorted(set(ids) & self.wanted):
            mine = rows[[i for i, d in enumerate(ids) if d == doc]]
            loss = CAUSAL_LM.loss(model, self.data.x[mine], self.data.y[mine], reduction="sum")
            grads = torch.autograd.grad(loss, list(params.values()))
            self.grads[doc] = {n: g.detach().to(torch.float16) for n, g in zip(params, grads, strict=True)}

    def after_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None:
        pass

    config = RecorderConfig(first_epoch_gradients=ALL_LAYERS)  # what gradient ascent checks it records

    def coverage(self, sample_ids, steps_per_epoch=None, epoch=None) -> LogCoverage:
        """Complete: it kept every forgotten document's gradient, and nothing erases them here."""
        return LogCoverage(samples=len(set(sample_ids)))

    def first_epoch_gradients(self, sample_ids) -> dict[str, torch.Tensor] | None:
        found = [self.grads[s] for s in sample_ids if s in self.grads]
        if not found:
            return None
        return {n: sum(g[n].float() for g in found) for n in found[0]}

    @property
    def stored_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for g in self.grads.values() for t in g.values())


class LanguageModelRun:
    def __init__(self, profile: Profile):
        self.profile = profile
        p = profile
        self.corpus: Corpus = build(
            p.load_texts(),
            fmt=p.fmt,
            inserted=p.inserted,
            forgotten=p.forgotten,
            never_inserted=p.never_inserted,
            repeats=p.repeats,
            seed=p.seed,
        )
        self.tokenizer = ByteTokenizer()
        blocks = pack_dataset(self.corpus.dataset, self.tokenizer, p.arch["context_length"])
        rng = np.random.default_rng(p.seed)
        train_rows, test_rows = blocks.rows("train"), blocks.rows("test")
        never_ids = self.corpus.never_ids
        test_rows = blocks.rows("test", exclude_ids=never_ids)
        self.forgotten_ids = self.corpus.documents_of(self.corpus.forgotten)
        retain_rows = blocks.rows("train", exclude_ids=self.forgotten_ids)
        prose_rows = blocks.rows("train", exclude_ids=self.corpus.documents_of(list(self.corpus.canaries)))

        def sample(rows: np.ndarray) -> np.ndarray:
            return np.sort(rng.choice(rows, min(len(rows), p.eval_blocks), replace=False))

        self.train_data = lm_tensors(blocks, train_rows, DEVICE, with_ids=True)
        self.prose = lm_tensors(blocks, prose_rows, DEVICE, with_ids=True)
        self.base_state: dict[str, torch.Tensor] | None = None
        self.retain = lm_tensors(blocks, retain_rows, DEVICE, with_ids=True)
        self.forget = lm_tensors(blocks, blocks.rows_of(self.forgotten_ids), DEVICE, with_ids=True)
        # Calibration: the never-inserted canary documents (held out, same kind as the forgotten).
        self.holdout = lm_tensors(blocks, blocks.rows_of(never_ids), DEVICE)
        self.eval_sets = {
            "forget": self.forget,
            "retain": lm_tensors(blocks, sample(prose_rows), DEVICE),
            "test": lm_tensors(blocks, sample(test_rows), DEVICE),
        }
        self.counts = {
            "documents": len(self.corpus.dataset),
            "train_blocks": len(train_rows),
            "test_blocks": len(test_rows),
            "forget_blocks": len(self.forget),
            "train_tokens": int(blocks.mask[train_rows].sum()),
        }
        self.workdir = Path(tempfile.mkdtemp(prefix="unlearnd-lm-bench-"))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def fresh_model(self) -> nn.Module:
        model = build_model(
            "gpt2", self.profile.arch, (self.profile.arch["context_length"],), self.tokenizer.vocab_size
        )
        return model.to(DEVICE)

    def base_model(self) -> nn.Module:
        """Where training (and so retraining) starts: the prose-pretrained base, or a fresh model."""
        model = self.fresh_model()
        if self.base_state is not None:
            model.load_state_dict(self.base_state)
        return model

    def parameter_count(self, model: nn.Module) -> int:
        return sum(p.numel() for p in model.parameters())

    # ---- measuring ----------------------------------------------------------------------------
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        c = self.corpus
        secrets = [c.canaries[d] for d in c.forgotten] + [c.canaries[d] for d in c.kept] + c.never_inserted
        found = [e.exposure for e in exposures(model, self.tokenizer, secrets, c.fmt, at_block_start=True)]
        nf, nk = len(c.forgotten), len(c.kept)
        groups = {"forgotten": found[:nf], "kept": found[nf : nf + nk], "never_inserted": found[nf + nk :]}
        out = lm_verification(model, self.eval_sets, forget_key="forget", holdout_key="test")
        out["exposure"] = {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "values": v} for k, v in groups.items()
        }
        return out

    # ---- the original model -------------------------------------------------------------------
    def pretrain(self) -> None:
        """Seed paper 002 fine-tunes a pretrained GPT-2 and records the first epoch of that
        fine-tuning; likewise the original here is a base model pretrained on the prose alone (no
        canary) and then trained on every training document with the recorder. Retraining starts
        from the same base. (From scratch, first-epoch gradients are taken while the model knows
        nothing of the language yet, and carry little that is specific to a document.)"""
        p = self.profile
        if not p.pretrain_epochs:
            return
        seed_everything(p.recipe.seed)
        started = time.perf_counter()
        base = train(
            self.fresh_model(),
            self.prose,
            p.recipe,
            progress=Progress(),
            phase="pretrain",
            epochs=p.pretrain_epochs,
            objective=CAUSAL_LM,
            group_by_ids=True,
        )
        self.pretrain_seconds = time.perf_counter() - started
        self.base_state = {k: v.detach().clone() for k, v in base.state_dict().items()}
        log.info("base pretrained on prose in %.1fs", self.pretrain_seconds)

    def train_original(self) -> dict[str, Any]:
        p = self.profile
        self.pretrain_seconds = 0.0
        self.pretrain()
        seed_everything(p.recipe.seed)
        model = self.base_model()
        store = self.workdir / "log"
        self.log_store = DirectoryLogStore(store)
        recorder = UpdateRecorder(
            model, self.train_data.ids, p.log, self.log_store, data=self.train_data, objective=CAUSAL_LM
        )
        self.all_layer_grads = ForgottenDocumentGradients(self.train_data, self.forgotten_ids)
        started = time.perf_counter()
        observer = Observers(recorder, self.all_layer_grads)
        self.original = train(
            model,
            self.train_data,
            p.recipe,
            progress=Progress(),
            observer=observer,
            objective=CAUSAL_LM,
            group_by_ids=True,
        )
        self.train_seconds = time.perf_counter() - started
        self.update_log = ManifestReader(recorder.finish(), self.log_store)
        self.original_state = {k: v.detach().clone() for k, v in self.original.state_dict().items()}
        self.original_metrics = self.evaluate(self.original)
        m = self.update_log.manifest
        wte = self.original.transformer.wte.weight.numel()
        self.storage = {
            "parameters": self.parameter_count(self.original),
            "embedding_parameters": wte,
            "embedding_gradient_bytes": m.gradient_bytes,
            # the same (step, document) gradients for every parameter, as bytes: computed, not recorded
            "all_layers_gradient_bytes_estimate": int(m.gradient_bytes * self.parameter_count(self.original) / wte),
            "forgotten_documents_all_layer_gradient_bytes": self.all_layer_grads.stored_bytes,
            "update_log_delta_bytes": m.stored_bytes,
            "dense_delta_bytes": m.dense_bytes,
        }
        log.info("original trained in %.1fs; exposure %s", self.train_seconds, _exposure_line(self.original_metrics))
        return self.original_metrics

    def restored_original(self) -> nn.Module:
        model = self.fresh_model()
        model.load_state_dict(self.original_state)
        return model.eval()

    # ---- one method ---------------------------------------------------------------------------
    def task(self, model: nn.Module, update_log) -> UnlearningTask:
        return UnlearningTask(
            model=model,
            build_model=self.base_model,
            recipe=self.profile.recipe,
            forget=self.forget,
            retain=self.retain,
            scope="sample_ids",
            num_classes=self.tokenizer.vocab_size,
            device=DEVICE,
            holdout=self.holdout,
            update_log=update_log,
            objective=CAUSAL_LM,
            kind="language_model",
        )

    def run(self, variant: Variant | None) -> dict[str, Any]:
        """``None`` is the reference: retrain from scratch without the forgotten documents."""
        method = get_method("retrain" if variant is None else variant.method)
        update_log = None
        if variant is not None and variant.gradients == "first_epoch":
            update_log = self.update_log if variant.layers == "embedding" else self.all_layer_grads
        task = self.task(self.restored_original(), update_log)
        params = method.parse_params({} if variant is None else variant.params)
        seed_everything(self.profile.seed)
        started = time.perf_counter()
        model = method.run(task, params).eval()
        seconds = time.perf_counter() - started
        metrics = self.evaluate(model)
        label = "retrain" if variant is None else variant.label
        log.info("%s: %.1fs; exposure %s; extra %s", label, seconds, _exposure_line(metrics), task.extra_metrics)
        return {"seconds": seconds, "metrics": metrics, "extra": _jsonable(task.extra_metrics)}


def _exposure_line(metrics: dict) -> str:
    e = metrics["exposure"]
    return ", ".join(f"{k} {v['mean']:.2f}" for k, v in e.items())


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def run_profile(profile: Profile) -> dict[str, Any]:
    run = LanguageModelRun(profile)
    try:
        original = run.train_original()
        reference = run.run(None)
        results = [{"variant": "original", "seconds": run.train_seconds, "metrics": original}]
        results.append({"variant": "retrain", **reference})
        for variant in profile.variants:
            row = run.run(variant)
            results.append(
                {
                    "variant": variant.label,
                    "method": variant.method,
                    "layers": variant.layers,
                    "gradients": variant.gradients,
                    **row,
                }
            )
        return {
            "counts": run.counts,
            "storage": run.storage,
            "train_seconds": run.train_seconds,
            "pretrain_seconds": run.pretrain_seconds,
            "retrain_seconds": reference["seconds"],
            "results": results,
        }
    finally:
        run.close()
