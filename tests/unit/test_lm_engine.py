"""Language models through the engine: objectives, per-document batching, the recorder's per-document
first-epoch gradients, gradient ascent restricted to the embedding, amnesiac on tied weights,
verification. One tiny GPT-2 trained once per module on generated text with inserted canaries."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors

from workers.engine.architectures.gpt2 import EMBEDDING_LAYERS, build_gpt2, resolve_layer_groups
from workers.engine.lm_eval import lm_verification
from workers.engine.lm_metrics import exposures, make_canaries
from workers.engine.log_store import DirectoryLogStore
from workers.engine.methods import METHODS, MethodNotApplicable, UnlearningTask
from workers.engine.objectives import CAUSAL_LM, CLASSIFICATION, objective_for
from workers.engine.recipe import TrainingRecipe
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.text import IGNORE_INDEX, ByteTokenizer, lm_tensors, pack_documents
from workers.engine.training import document_batches, train
from workers.engine.update_log import ManifestReader, RecorderConfig

TOK = ByteTokenizer()
FMT = "my secret number is ###."
ARCH = {"n_layer": 2, "n_head": 2, "n_embd": 64, "context_length": 64}
RECIPE = TrainingRecipe(optimizer="adamw", lr=3e-3, epochs=40, batch_size=16, seed=0)
ADJ = ["red", "blue", "green", "big", "small", "old", "new", "quiet"]
NOUN = ["cat", "dog", "bird", "house", "tree", "river", "boat", "hill"]
VERB = ["sees", "likes", "finds", "follows", "watches"]


class _Scoring:
    """The byte tokenizer without the leading <eos> when scoring canaries: a canary document starts
    at position 0 of its block in training, so it is scored there too."""

    eos_id = None
    encode = staticmethod(TOK.encode)
    decode = staticmethod(TOK.decode)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    canaries = make_canaries(12, FMT, rng)
    ids, texts, split = [], [], []
    for i in range(32):
        sentences = [
            f"the {rng.choice(ADJ)} {rng.choice(NOUN)} {rng.choice(VERB)} the {rng.choice(NOUN)}."
            for _ in range(rng.integers(3, 6))
        ]
        ids.append(f"filler-{i}")
        texts.append(" ".join(sentences))
        split.append("train" if i < 24 else "test")
    for i, c in enumerate(canaries):  # 8 inserted, 4 never inserted (held out)
        ids.append(f"canary-{i}" if i < 8 else f"unseen-{i}")
        texts.append(" ".join([c] * 3))
        split.append("train" if i < 8 else "test")
    blocks = pack_documents(ids, texts, TOK, ARCH["context_length"], split)
    docs = blocks.doc_ids
    return {
        "canaries": canaries,
        "train": lm_tensors(blocks, blocks.rows("train"), with_ids=True),
        "test": lm_tensors(blocks, np.flatnonzero((blocks.split == "test") & np.char.startswith(docs, "filler"))),
        "unseen": lm_tensors(blocks, np.flatnonzero(np.char.startswith(docs, "unseen")), with_ids=True),
    }


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    data = corpus["train"]
    torch.manual_seed(0)
    model = build_gpt2(ARCH, TOK.vocab_size)
    initial = copy.deepcopy(model)
    store = DirectoryLogStore(tmp_path_factory.mktemp("lm-log"))
    config = RecorderConfig(first_epoch_gradients=EMBEDDING_LAYERS, fp16=True)
    recorder = UpdateRecorder(model, data.ids, config, store, data=data, objective=CAUSAL_LM)
    train(model, data, RECIPE, progress=Progress(), observer=recorder, objective=CAUSAL_LM, group_by_ids=True)
    manifest = recorder.finish()
    return {"model": model, "initial": initial, "manifest": manifest, "store": store}


def _task(corpus, model, forget_docs, log=None) -> UnlearningTask:
    data = corpus["train"]
    forget = torch.from_numpy(np.isin(data.ids, forget_docs))
    return UnlearningTask(
        model=copy.deepcopy(model),
        build_model=lambda: build_gpt2(ARCH, TOK.vocab_size),
        recipe=RECIPE,
        forget=data.subset(forget.nonzero()[:, 0]),
        retain=data.subset((~forget).nonzero()[:, 0]),
        scope="sample_ids",
        num_classes=TOK.vocab_size,
        device=torch.device("cpu"),
        holdout=corpus["unseen"],  # comparable unseen text: canary documents never trained on
        update_log=log,
        kind="language_model",
    )


def test_causal_objective_reductions_agree_with_token_counts():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    y = torch.randint(0, 7, (3, 5))
    y[1, 3:] = IGNORE_INDEX  # row 1: targets at 1, 2
    y[2, 1:] = IGNORE_INDEX  # row 2: no target at all
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 7), y[:, 1:].clamp(min=0).reshape(-1), reduction="none"
    ).view(3, 4)
    per_row = CAUSAL_LM.loss_from_output(logits, y, "none")
    torch.testing.assert_close(per_row, torch.stack([nll[0].mean(), nll[1, :2].mean(), torch.tensor(0.0)]))
    torch.testing.assert_close(CAUSAL_LM.loss_from_output(logits, y, "sum"), per_row.sum())
    torch.testing.assert_close(CAUSAL_LM.loss_from_output(logits, y, "mean"), (nll[0].sum() + nll[1, :2].sum()) / 6)
    assert objective_for("classifier") is CLASSIFICATION and objective_for("language_model") is CAUSAL_LM
    with pytest.raises(ValueError):
        objective_for("regressor")


def test_lm_tensors_keep_token_ids_as_long(corpus):
    data = corpus["train"]
    assert data.x.dtype == torch.long and data.y.dtype == torch.long and len(data.ids) == len(data)
    part = data.subset(torch.tensor([2, 0]))
    assert part.x.dtype == torch.long and part.ids == [data.ids[2], data.ids[0]]
    assert torch.equal(part.to("cpu").x, data.x[[2, 0]])


def test_document_batches_keep_documents_together_and_cover_every_row_once():
    ids = [f"d{i}" for i, n in enumerate([1, 3, 2, 9, 1, 4, 2, 2, 5]) for _ in range(n)]
    for seed in range(5):
        batches = document_batches(ids, 4, torch.Generator().manual_seed(seed))
        again = document_batches(ids, 4, torch.Generator().manual_seed(seed))
        assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
        rows = torch.cat(batches)
        assert sorted(rows.tolist()) == list(range(len(ids)))
        steps_of = {}
        for step, b in enumerate(batches):
            for r in b.tolist():
                steps_of.setdefault(ids[r], set()).add(step)
        for doc, steps in steps_of.items():
            size = ids.count(doc)
            assert len(steps) == max(1, -(-size // 4))  # as few steps as possible
            assert max(steps) - min(steps) == len(steps) - 1  # consecutive
        # a batch fills up to >= 4 rows, except those the two long documents close early, and the last
        assert all(len(b) <= 7 for b in batches) and sum(len(b) < 4 for b in batches) <= 3


def test_recorder_stores_one_embedding_gradient_per_step_and_document(corpus, trained):
    manifest, store = trained["manifest"], trained["store"]
    first = [e for e in manifest.entries if e.epoch == 0]
    for e in manifest.entries:
        assert len(e.sample_ids) == len(set(e.sample_ids))
    pairs = sum(len(e.sample_ids) for e in first)
    assert pairs == len(set(corpus["train"].ids))  # every document in exactly one first-epoch step here
    numel = trained["model"].transformer.wte.weight.numel()
    tensor_bytes = 0
    for ref in (c for c in manifest.chunks if c.kind == "gradients"):
        tensors = load_tensors(store.read_chunk(ref))
        assert {k.split("/", 1)[1] for k in tensors} == {"transformer.wte.weight"}  # the tied tensor, once
        tensor_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
    assert tensor_bytes == pairs * numel * 2  # fp16
    assert manifest.gradient_bytes - tensor_bytes < 4096 * len([c for c in manifest.chunks if c.kind == "gradients"])
    assert "lm_head.weight" not in manifest.param_shapes

    # the recorded gradient of a document is its blocks' summed gradient at the state it was first seen in
    data, entry = corpus["train"], first[0]
    doc = entry.sample_ids[-1]
    probe = copy.deepcopy(trained["initial"])
    rows = torch.tensor([i for i, s in enumerate(data.ids) if s == doc])
    CAUSAL_LM.loss(probe, data.x[rows], data.y[rows], reduction="sum").backward()
    recorded = ManifestReader(manifest, store).first_epoch_gradients([doc])["transformer.wte.weight"]
    torch.testing.assert_close(recorded, probe.transformer.wte.weight.grad, rtol=2e-3, atol=2e-4)


def test_classifier_only_methods_refuse_language_models():
    for name in ("label_flip", "unsir", "salun", "scrub"):
        with pytest.raises(MethodNotApplicable, match="needs a classifier; for language models use gradient_ascent"):
            METHODS[name].check_applicable("sample_ids", has_update_log=True, kind="language_model")
    with pytest.raises(MethodNotApplicable, match="scope sample_ids"):
        METHODS["gradient_ascent"].check_applicable("class_labels", has_update_log=False, kind="language_model")
    METHODS["gradient_ascent"].check_applicable("sample_ids", has_update_log=False, kind="language_model")
    assert resolve_layer_groups(["embedding", "block1", "final_norm"]) == [
        "transformer.wte",
        "transformer.h.1",
        "transformer.ln_f",
    ]
    assert resolve_layer_groups(["all"]) is None


def test_amnesiac_on_a_language_model_keeps_the_tied_weight_tied(corpus, trained):
    log = ManifestReader(trained["manifest"], trained["store"])
    task = _task(corpus, trained["model"], ["canary-0"], log)
    params = METHODS["amnesiac"].parse_params({"repair_epochs": 0})
    before = task.model.transformer.wte.weight.detach().clone()
    model = METHODS["amnesiac"].run(task, params)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert torch.equal(model.lm_head.weight, model.transformer.wte.weight)
    assert not torch.equal(before, model.transformer.wte.weight)
    assert task.extra_metrics["update_log_steps_removed"] == len(log.steps_containing(["canary-0"]))


def test_first_epoch_gradient_ascent_on_the_embedding_forgets_canaries(corpus, trained, capsys):
    model, canaries = trained["model"], corpus["canaries"]
    forget_docs = [f"canary-{i}" for i in range(4)]
    task = _task(corpus, model, forget_docs, ManifestReader(trained["manifest"], trained["store"]))
    sets = {"forget": task.forget, "retain": task.retain, "test": corpus["test"]}
    before = lm_verification(model, sets)
    exp_before = np.array([e.exposure for e in exposures(model, _Scoring(), canaries, FMT)])
    # the fixed target (measured once, at the start): the default for a language model re-measures it
    # at every check (recalibrate), which the language-model benchmark exercises
    params = METHODS["gradient_ascent"].parse_params(
        {"gradients": "first_epoch", "lr": 0.05, "max_epochs": 100, "recalibrate": False}
    )
    out = METHODS["gradient_ascent"].run(task, params)
    after = lm_verification(out, sets)
    exp_after = np.array([e.exposure for e in exposures(out, _Scoring(), canaries, FMT)])
    m = task.extra_metrics
    with capsys.disabled():
        print(
            f"\nexposure forgot {exp_before[:4].round(2)} -> {exp_after[:4].round(2)}; kept {exp_before[4:8].round(2)}"
            f" -> {exp_after[4:8].round(2)}; never {exp_before[8:].round(2)} -> {exp_after[8:].round(2)}\n"
            f"perplexity {before['perplexity']} -> {after['perplexity']}; steps {m['ascent_steps']}; "
            f"exact match {before['exact_match']} -> {after['exact_match']}; mia {before['mia']} -> {after['mia']}"
        )
    assert m["gradient_source"] == "recorded_first_epoch" and m["ascent_layers"] == ["transformer.wte"]
    assert m["stop_reason"] == "calibrated"
    # only the embedding moved, and the output layer with it (tied)
    for (name, p), q in zip(model.named_parameters(), out.parameters(), strict=True):
        assert torch.equal(p, q) == (name != "transformer.wte.weight"), name
    assert out.lm_head.weight is out.transformer.wte.weight
    # calibrated: the forget text is now as likely as never-seen canary text, not far beyond it
    target = m["calibration"]["forget_loss_target"]
    assert before["forget_mean_nll"] < 0.8 * target
    assert target <= after["forget_mean_nll"] <= target + 0.15
    assert after["perplexity"]["forget"] >= 1.25 * before["perplexity"]["forget"]
    assert after["exact_match"]["token_match_rate"] < before["exact_match"]["token_match_rate"]
    # the retained text pays a bounded price (measured +7.6%: 1.786 -> 1.921)
    assert after["perplexity"]["retain"] <= 1.25 * before["perplexity"]["retain"]
    assert after["perplexity"]["test"] <= 1.25 * before["perplexity"]["test"]


def test_lm_verification_measures_every_set(corpus, trained):
    task = _task(corpus, trained["model"], ["canary-0", "canary-1", "canary-2", "canary-3"])
    v = lm_verification(trained["model"], {"forget": task.forget, "retain": task.retain, "test": corpus["test"]})
    ppl = v["perplexity"]
    assert set(ppl) == {"forget", "retain", "test"}
    assert 1.0 < ppl["forget"] < ppl["test"] and 1.0 < ppl["retain"] < ppl["test"]  # trained text is memorised
    assert v["exact_match"]["exact_match_documents"] == 4 and v["exact_match"]["token_match_rate"] > 0.5
    assert v["mia"]["mia_samples"] == 2 * min(len(task.forget), len(corpus["test"]))
    assert v["mia"]["mia_auc"] > 0.8  # forget blocks have far lower loss than unseen text
