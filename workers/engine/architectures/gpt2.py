"""GPT-2 causal language model (transformers' GPT2LMHeadModel), built from a config: never downloaded.

In the registry's ``build(config, input_shape, num_classes)`` a language model reads
``input_shape = (sequence_length,)`` (token IDs, at most ``context_length`` of them) and
``num_classes = vocab_size`` (the tokenizer's, see workers.engine.text). The output embedding
``lm_head.weight`` is tied to the input embedding ``transformer.wte.weight``: one tensor under two
names (checkpoints store it once, see workers.engine.checkpoints).

The config, the layout and the parameter groups (``embedding``, ``block0``, ...) are torch-free, in
catalog.py; transformers is imported when a model is built or a BPE tokenizer made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.engine.architectures.base import ArchitectureError
from workers.engine.architectures.catalog import (
    EMBEDDING_LAYERS,
    LAYER_GROUPS,
    MAX_VOCAB_SIZE,
    GPT2ArchConfig,
    check_gpt2,
    resolve_layer_groups,
)

if TYPE_CHECKING:
    from torch import nn


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


def build_gpt2_for(config: GPT2ArchConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The registry's build: ``input_shape`` (sequence_length,), ``num_classes`` the vocabulary size."""
    check_gpt2(config, input_shape, num_classes)
    return build_gpt2(config, num_classes)


__all__ = [
    "EMBEDDING_LAYERS",
    "LAYER_GROUPS",
    "MAX_VOCAB_SIZE",
    "GPT2ArchConfig",
    "build_gpt2",
    "build_gpt2_for",
    "resolve_layer_groups",
    "tokenizer_for",
]
