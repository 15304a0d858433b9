"""Language-model slice of the engine: tokenizers, JSON Lines text datasets, packing, the gpt2 architecture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from workers.engine import checkpoints
from workers.engine.architectures import ArchitectureError, build_model, expected_tensors, parse_config
from workers.engine.architectures.gpt2 import build_gpt2
from workers.engine.text import (
    IGNORE_INDEX,
    BpeTokenizer,
    ByteTokenizer,
    DatasetFormatError,
    Tokenizer,
    make_tokenizer,
    pack_dataset,
    pack_documents,
    parse_jsonl,
    to_jsonl_bytes,
)

SMALL = {"n_layer": 2, "n_head": 2, "n_embd": 48, "context_length": 32}


def _jsonl(*docs) -> bytes:
    return "\n".join(d if isinstance(d, str) else json.dumps(d) for d in docs).encode()


# --- tokenizers -------------------------------------------------------------------------------


def test_byte_tokenizer_round_trips_unicode_and_reserves_eos():
    tok = ByteTokenizer()
    text = "Grüße, 世界! 🙂 tab\tnew\nline"
    ids = tok.encode(text)
    assert all(0 <= i < 256 for i in ids) and len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.vocab_size == 257 and tok.eos_id == 256 and tok.pad_id == 256
    assert tok.decode([*ids, tok.eos_id]) == text  # special tokens are not text
    assert isinstance(tok, Tokenizer) and isinstance(make_tokenizer(), ByteTokenizer)


def test_bpe_tokenizer_from_hand_written_vocab_and_merges(tmp_path):
    vocab = {c: i for i, c in enumerate(["h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "hell", "hello"])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh e\nl l\nhe ll\nhell o\n")
    tok = make_tokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert isinstance(tok, BpeTokenizer) and isinstance(tok, Tokenizer)
    ids = tok.encode("hello world")
    assert ids[0] == vocab["hello"] and ids[1] == vocab["Ġ"]  # the merges were applied
    assert tok.decode(ids) == "hello world"
    assert tok.eos_id == len(vocab) and tok.vocab_size == len(vocab) + 1  # <|endoftext|> added
    assert tok.decode([*ids, tok.eos_id]) == "hello world"
    with pytest.raises(ValueError, match="both"):
        make_tokenizer(tmp_path / "vocab.json")
    with pytest.raises(FileNotFoundError):
        BpeTokenizer(tmp_path / "nope.json", tmp_path / "merges.txt")


# --- JSON Lines datasets -----------------------------------------------------------------------


def test_jsonl_parses_documents_with_stable_hash_split_and_explicit_splits():
    docs = [{"id": f"doc-{i}", "text": f"text number {i}"} for i in range(50)]
    docs[3]["split"] = "val"
    ds = parse_jsonl(_jsonl(*docs) + b"\n\n")  # blank lines are skipped
    assert ds.ids.tolist() == [d["id"] for d in docs] and ds.texts[7] == "text number 7"
    assert ds.split[3] == "val" and set(ds.split.tolist()) <= {"train", "test", "val"}
    assert parse_jsonl(_jsonl(*reversed(docs))).split.tolist() == ds.split.tolist()[::-1]  # by ID, not position
    assert 0 < ds.split_counts().get("test", 0) < 25
    assert ds.unknown_ids(["doc-1", "ghost"]) == ["ghost"]
    again = parse_jsonl(to_jsonl_bytes(ds))
    assert again.ids.tolist() == ds.ids.tolist() and again.split.tolist() == ds.split.tolist()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": "a", "text": "x"}, '{"id": "b", "text": '], r"line 2: not valid JSON"),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}, {"text": "z"}], r"line 3: .*missing \['id'\]"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], r"'a' on lines 1, 2"),
        ([{"id": "a", "text": 5}], r"line 1: text must be a non-empty string"),
        ([{"id": "a", "text": "x"}, {"id": 7, "text": "y"}], r"line 2: id must be a string"),
        ([{"id": "a\nb", "text": "x"}], r"line 1: id must not contain control characters"),
        ([{"id": "a", "text": "x", "label": 1}], r"line 1: .*unexpected \['label'\]"),
        ([{"id": "a", "text": "x", "split": "dev"}], r"line 1: split must be one of"),
        (['["a", "x"]'], r"line 1: expected an object"),
        ([{"id": "a", "text": "x", "split": "test"}], r"no training documents"),
    ],
)
def test_jsonl_errors_name_the_line(lines, message):
    with pytest.raises(DatasetFormatError, match=message):
        parse_jsonl(_jsonl(*lines))


def test_jsonl_duplicates_are_listed_and_caps_hold():
    with pytest.raises(DatasetFormatError) as exc:
        parse_jsonl(_jsonl(*({"id": s, "text": "t"} for s in ["a", "b", "a", "b", "c", "a"])))
    assert exc.value.duplicates == ["a", "b"] and exc.value.duplicate_count == 2
    assert "'a' on lines 1, 3, 6" in str(exc.value)
    with pytest.raises(DatasetFormatError, match="not UTF-8"):
        parse_jsonl(b'{"id": "a", "text": "\xff"}')
    with pytest.raises(DatasetFormatError, match="larger than"):
        parse_jsonl(_jsonl({"id": "a", "text": "x" * 100}), max_bytes=50)
    with pytest.raises(DatasetFormatError, match="line 3: more than 2 documents"):
        parse_jsonl(_jsonl(*({"id": str(i), "text": "t"} for i in range(3))), max_documents=2)
    with pytest.raises(DatasetFormatError, match="line 1: text is longer than 10"):
        parse_jsonl(_jsonl({"id": "a", "text": "x" * 11}), max_text_chars=10)
    with pytest.raises(DatasetFormatError, match="no documents"):
        parse_jsonl(b"\n \n")


# --- packing -----------------------------------------------------------------------------------


def test_packing_keeps_each_document_in_its_own_blocks():
    tok = ByteTokenizer()
    texts = ["a" * 5, "b" * 16, "c" * 40]  # + eos: 6, 17, 41 tokens
    packed = pack_documents(["A", "B", "C"], texts, tok, 16, split=["train", "test", "train"])
    assert packed.tokens.shape == (1 + 2 + 3, 16) and packed.tokens.dtype == np.int64
    assert packed.doc_ids.tolist() == ["A", "B", "B", "C", "C", "C"]
    assert packed.split.tolist() == ["train", "test", "test", "train", "train", "train"]
    for row, sid in enumerate(packed.doc_ids.tolist()):  # no block mixes documents
        real = packed.tokens[row][packed.mask[row]]
        assert set(real.tolist()) <= {ord(sid.lower()), tok.eos_id}
    assert packed.mask.sum(axis=1).tolist() == [6, 16, 1, 16, 16, 9]
    assert (packed.tokens[~packed.mask] == tok.pad_id).all()
    assert (packed.labels[~packed.mask] == IGNORE_INDEX).all()
    assert (packed.labels[packed.mask] == packed.tokens[packed.mask]).all()
    # each document ends with one eos, and decodes back to its text
    for sid, text in zip("ABC", texts, strict=True):
        rows = packed.rows_of([sid])
        tokens = packed.tokens[rows][packed.mask[rows]].tolist()
        assert tokens[-1] == tok.eos_id and tokens.count(tok.eos_id) == 1 and tok.decode(tokens) == text
    # forgetting a document = dropping its blocks
    assert packed.rows(exclude_ids=["B"]).tolist() == [0, 3, 4, 5]
    assert packed.rows("train", exclude_ids=["C"]).tolist() == [0]
    ds = parse_jsonl(_jsonl({"id": "A", "text": texts[0]}, {"id": "C", "text": texts[2]}))
    assert pack_dataset(ds, tok, 16).doc_ids.tolist() == ["A", "C", "C", "C"]


# --- gpt2 architecture -------------------------------------------------------------------------


def test_gpt2_builds_from_config_without_download():
    torch.manual_seed(0)
    model = build_gpt2(SMALL, ByteTokenizer().vocab_size)
    assert 50_000 < sum(p.numel() for p in model.parameters()) < 150_000
    out = model(torch.randint(0, 257, (3, 20)))
    assert out.logits.shape == (3, 20, 257)
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    # the registry: input_shape = (sequence length,), num_classes = vocabulary size
    same = build_model("gpt2", SMALL, (32,), 257)
    assert type(same) is type(model) and same.config.n_positions == 32
    with pytest.raises(ArchitectureError, match="context_length"):
        build_model("gpt2", SMALL, (64,), 257)
    with pytest.raises(ArchitectureError, match="shaped"):
        build_model("gpt2", SMALL, (8, 8), 257)
    with pytest.raises(ValidationError, match="multiple of n_head"):
        parse_config("gpt2", {"n_embd": 50, "n_head": 4})
    with pytest.raises(ValidationError):
        parse_config("gpt2", {"n_layer": 2, "vocab_size": 10})


def test_gpt2_expected_tensors_match_what_a_checkpoint_stores():
    model = build_model("gpt2", SMALL, (32,), 257)
    shapes = expected_tensors("gpt2", SMALL, (32,), 257)
    state = model.state_dict()
    assert set(state) - set(shapes) == {"lm_head.weight"}  # the tied alias is stored once
    assert shapes == {k: tuple(v.shape) for k, v in state.items() if k != "lm_head.weight"}
    assert checkpoints.tied_aliases(model) == {"lm_head.weight": "transformer.wte.weight"}
    from safetensors.torch import load

    assert {k: tuple(v.shape) for k, v in load(checkpoints.to_bytes(model)).items()} == shapes


def test_gpt2_safetensors_round_trip_gives_equal_logits_and_keeps_the_tie():
    torch.manual_seed(1)
    a = build_gpt2(SMALL, 257)
    with torch.no_grad():
        a.lm_head.weight.add_(0.5)  # a trained-looking embedding, not the init
    b = build_gpt2(SMALL, 257)
    checkpoints.load_into(b, checkpoints.to_bytes(a, {"note": "x"}))
    assert checkpoints.state_equal(a, b)
    assert b.lm_head.weight is b.transformer.wte.weight
    a.eval(), b.eval()
    x = torch.randint(0, 257, (2, 16))
    with torch.no_grad():
        assert torch.equal(a(x).logits, b(x).logits)


def test_classifier_checkpoints_are_unchanged_by_tie_handling():
    mlp = build_model("mlp", {}, (4,), 3)
    assert checkpoints.tied_aliases(mlp) == {}
    other = build_model("mlp", {}, (4,), 3)
    checkpoints.load_into(other, checkpoints.to_bytes(mlp))
    assert checkpoints.state_equal(mlp, other)


def test_gpt2_learns_a_repeated_text():
    torch.manual_seed(0)
    tok = ByteTokenizer()
    packed = pack_documents(["d"], ["the cat sat on the mat. " * 12], tok, 32)
    x, labels = torch.from_numpy(packed.tokens), torch.from_numpy(packed.labels)
    model = build_gpt2(SMALL, tok.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = model(x, attention_mask=torch.from_numpy(packed.mask).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 5.0  # about ln(257) at init
    assert losses[-1] < 3.0 and losses[-1] < 0.55 * losses[0], losses
