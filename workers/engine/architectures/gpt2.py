"""GPT-2 causal language model (transformers' GPT2LMHeadModel), built from a config: never downloaded.

In the registry's ``build(config, input_shape, num_classes)`` a language model reads
``input_shape = (sequence_length,)`` (token IDs, at most ``context_length`` of them) and
``num_classes = vocab_size`` (the tokenizer's, see workers.engine.text). The output embedding
``lm_head.weight`` is tied to the input embedding ``transformer.wte.weight``: one tensor under two
names (checkpoints store it once, see workers.engine.checkpoints).

transformers is imported when a model is built, not when the registry loads.

Parameter groups (what gradient_ascent's ``layers`` and the recorder's first-epoch gradients take,
see :func:`resolve_layer_groups`): ``embedding`` (the token embedding ``transformer.wte``, which is
also the tied output layer: the default for unlearning a language model, seed paper 002),
``positions`` (``transformer.wpe``), ``block0`` .. ``blockN`` (``transformer.h.N``), ``final_norm``
(``transformer.ln_f``) and ``all`` (every parameter); any other name is a parameter-name prefix.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from workers.engine.architectures.base import Architecture, ArchitectureConfig, ArchitectureError

MAX_VOCAB_SIZE = 262_144
EMBEDDING_LAYERS = ["transformer.wte"]  # the token embedding (= the tied lm_head): the default group
LAYER_GROUPS = {"embedding": "transformer.wte", "positions": "transformer.wpe", "final_norm": "transformer.ln_f"}
_BLOCK = re.compile(r"^block(\d+)$")


def resolve_layer_groups(layers: list[str] | None) -> list[str] | None:
    """Named GPT-2 parameter groups -> parameter-name prefixes (for ``select_parameters``).

    ``None`` stays ``None`` (every parameter), as does any list holding ``"all"``; ``embedding``,
    ``positions``, ``final_norm`` and ``blockN`` map to their modules; anything else is kept as the
    prefix it already is (``transformer.h.1.mlp``). Order is kept, duplicates dropped."""
    if layers is None or "all" in layers:
        return None
    out: list[str] = []
    for name in layers:
        block = _BLOCK.match(name)
        prefix = f"transformer.h.{block.group(1)}" if block else LAYER_GROUPS.get(name, name)
        if prefix not in out:
            out.append(prefix)
    return out


class GPT2ArchConfig(ArchitectureConfig):
    n_layer: int = Field(default=2, ge=1, le=48, description="Transformer blocks.")
    n_head: int = Field(default=2, ge=1, le=64, description="Attention heads per block.")
    n_embd: int = Field(default=64, ge=8, le=4096, description="Hidden width (a multiple of n_head).")
    context_length: int = Field(default=128, ge=8, le=4096, description="Longest token sequence (n_positions).")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Residual, embedding and attention dropout.")
    tokenizer: Literal["byte", "bpe"] = Field(
        default="byte",
        description="byte: UTF-8 bytes + <eos> (257 tokens, no files); bpe: GPT-2 byte-level BPE from "
        "bpe_vocab_path and bpe_merges_path.",
    )
    bpe_vocab_path: str | None = Field(
        default=None, max_length=4096, description="bpe: the vocab.json, a path on the server (never downloaded)."
    )
    bpe_merges_path: str | None = Field(
        default=None, max_length=4096, description="bpe: the merges.txt, a path on the server (never downloaded)."
    )

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self

    @model_validator(mode="after")
    def _tokenizer_files(self):
        files = (self.bpe_vocab_path, self.bpe_merges_path)
        if self.tokenizer == "bpe" and None in files:
            raise ValueError("tokenizer 'bpe' needs both bpe_vocab_path and bpe_merges_path")
        if self.tokenizer == "byte" and files != (None, None):
            raise ValueError("bpe_vocab_path and bpe_merges_path are for tokenizer 'bpe' only")
        return self


def tokenizer_for(config: dict[str, Any] | GPT2ArchConfig | None):
    """The tokenizer a gpt2 config names (workers.engine.text); its ``vocab_size`` is the model's."""
    from workers.engine.text import make_tokenizer

    cfg = config if isinstance(config, GPT2ArchConfig) else GPT2ArchConfig.model_validate(config or {})
    if cfg.tokenizer == "bpe":
        return make_tokenizer(cfg.bpe_vocab_path, cfg.bpe_merges_path)
    return make_tokenizer()


def build_gpt2(config: dict[str, Any] | GPT2ArchConfig | None, vocab_size: int) -> nn.Module:
    """A freshly initialised GPT2LMHeadModel for this config and vocabulary size.

    ``config`` is a dict of GPT2ArchConfig fields (validated; pydantic.ValidationError if wrong).
    Calling it with the model in eval mode returns ``output.logits`` of shape (batch, seq, vocab_size).
    """
    cfg = config if isinstance(config, GPT2ArchConfig) else GPT2ArchConfig.model_validate(config or {})
    if not 2 <= vocab_size <= MAX_VOCAB_SIZE:
        raise ArchitectureError(f"gpt2 needs a vocabulary of 2 to {MAX_VOCAB_SIZE} tokens, not {vocab_size}")
    from transformers import GPT2Config, GPT2LMHeadModel

    hf_config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.context_length,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )
    return GPT2LMHeadModel(hf_config)


def _build(config: GPT2ArchConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 1 or not 1 <= input_shape[0] <= config.context_length:
        raise ArchitectureError(
            f"gpt2 needs token sequences shaped (length,) with length at most context_length "
            f"({config.context_length}); this dataset's rows are {input_shape}"
        )
    return build_gpt2(config, num_classes)


GPT2 = Architecture(
    name="gpt2",
    description="GPT-2 causal language model (transformers GPT2LMHeadModel); classes are the vocabulary.",
    config_model=GPT2ArchConfig,
    build=_build,
    kind="language_model",
)
