"""The built-in architectures as the API sees them: configs, the tensors a checkpoint holds
(``layout``), GPT-2's parameter groups and vocabulary size. Torch-free, so the API validates model
specs and uploaded weights without importing torch; ``build`` imports the architecture's module
(``mlp.py``, ``cnn_small.py``, ``resnet18.py``, ``gpt2.py``) on first use. tests/unit/test_architectures.py
checks each layout against the built model's state dict.

GPT-2 parameter groups (what gradient_ascent's ``layers`` and the recorder's first-epoch gradients
take, see :func:`resolve_layer_groups`): ``embedding`` (the token embedding ``transformer.wte``, which
is also the tied output layer: the default for unlearning a language model, seed paper 002),
``positions`` (``transformer.wpe``), ``block0`` .. ``blockN`` (``transformer.h.N``), ``final_norm``
(``transformer.ln_f``) and ``all`` (every parameter); any other name is a parameter-name prefix.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from workers.engine.architectures.base import Architecture, ArchitectureConfig, ArchitectureError, image_shape

Shapes = dict[str, tuple[int, ...]]


def _builder(module: str, function: str):
    """``build`` that imports the torch module only when a model is built."""

    def build(config: ArchitectureConfig, input_shape: tuple[int, ...], num_classes: int):
        built = getattr(importlib.import_module(f"workers.engine.architectures.{module}"), function)
        return built(config, input_shape, num_classes)

    return build


def _linear(out: Shapes, name: str, fan_in: int, fan_out: int) -> None:
    out[f"{name}.weight"], out[f"{name}.bias"] = (fan_out, fan_in), (fan_out,)


# ---- mlp --------------------------------------------------------------------------------------


class MLPConfig(ArchitectureConfig):
    hidden: list[Annotated[int, Field(ge=1, le=8192)]] = Field(
        default=[128, 64], max_length=8, description="Width of each hidden layer (0-8 layers, 1-8192 each)."
    )
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")


def mlp_layout(config: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> Shapes:
    out: Shapes = {}
    width = math.prod(input_shape)
    for i, h in enumerate(config.hidden, start=1):
        _linear(out, f"fc{i}", width, h)
        width = h
    _linear(out, "out", width, num_classes)
    return out


# ---- cnn_small --------------------------------------------------------------------------------


class CNNSmallConfig(ArchitectureConfig):
    channels: list[Annotated[int, Field(ge=1, le=512)]] = Field(
        default=[16, 32],
        min_length=1,
        max_length=4,
        description="Output channels of each 3x3 conv block (conv, ReLU, 2x2 max-pool); 1-512 each.",
    )
    hidden: int = Field(default=64, ge=1, le=4096, description="Width of the hidden fully connected layer.")


def cnn_small_layout(config: CNNSmallConfig, input_shape: tuple[int, ...], num_classes: int) -> Shapes:
    c, h, w = image_shape(input_shape, "cnn_small")
    out: Shapes = {}
    for i, channels in enumerate(config.channels, start=1):
        out[f"conv{i}.weight"], out[f"conv{i}.bias"] = (channels, c, 3, 3), (channels,)
        if min(h, w) >= 2:  # pooled, as cnn_small.py does
            h, w = h // 2, w // 2
        c = channels
    _linear(out, "fc1", c * h * w, config.hidden)
    _linear(out, "fc2", config.hidden, num_classes)
    return out


# ---- resnet18 ---------------------------------------------------------------------------------


class ResNet18Config(ArchitectureConfig):
    width: int = Field(default=64, ge=4, le=256, description="Channels of the first stage (then x2, x4, x8).")


def _batch_norm(out: Shapes, name: str, n: int) -> None:
    for key in ("weight", "bias", "running_mean", "running_var"):
        out[f"{name}.{key}"] = (n,)
    out[f"{name}.num_batches_tracked"] = ()


def resnet18_layout(config: ResNet18Config, input_shape: tuple[int, ...], num_classes: int) -> Shapes:
    c = image_shape(input_shape, "resnet18")[0]
    out: Shapes = {"conv1.weight": (config.width, c, 3, 3)}
    _batch_norm(out, "bn1", config.width)
    cin = config.width
    for i, stride in enumerate((1, 2, 2, 2)):
        cout = config.width * 2**i
        for b, (block_in, block_stride) in enumerate(((cin, stride), (cout, 1))):
            name = f"layer{i + 1}.{b}"
            out[f"{name}.conv1.weight"] = (cout, block_in, 3, 3)
            _batch_norm(out, f"{name}.bn1", cout)
            out[f"{name}.conv2.weight"] = (cout, cout, 3, 3)
            _batch_norm(out, f"{name}.bn2", cout)
            if block_stride != 1 or block_in != cout:
                out[f"{name}.shortcut.0.weight"] = (cout, block_in, 1, 1)
                _batch_norm(out, f"{name}.shortcut.1", cout)
        cin = cout
    _linear(out, "fc", cin, num_classes)
    return out


# ---- gpt2 -------------------------------------------------------------------------------------

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


def check_gpt2(config: GPT2ArchConfig, input_shape: tuple[int, ...], vocab_size: int) -> None:
    """What gpt2 refuses before building: sequences longer than its context, an unusable vocabulary."""
    if len(input_shape) != 1 or not 1 <= input_shape[0] <= config.context_length:
        raise ArchitectureError(
            f"gpt2 needs token sequences shaped (length,) with length at most context_length "
            f"({config.context_length}); this dataset's rows are {input_shape}"
        )
    if not 2 <= vocab_size <= MAX_VOCAB_SIZE:
        raise ArchitectureError(f"gpt2 needs a vocabulary of 2 to {MAX_VOCAB_SIZE} tokens, not {vocab_size}")


def gpt2_layout(config: GPT2ArchConfig, input_shape: tuple[int, ...], num_classes: int) -> Shapes:
    """GPT2LMHeadModel's tensors; ``lm_head.weight`` is tied to ``transformer.wte.weight``, stored once."""
    check_gpt2(config, input_shape, num_classes)
    e = config.n_embd
    out: Shapes = {"transformer.wte.weight": (num_classes, e), "transformer.wpe.weight": (config.context_length, e)}
    for i in range(config.n_layer):
        block = f"transformer.h.{i}"
        out[f"{block}.ln_1.weight"], out[f"{block}.ln_1.bias"] = (e,), (e,)
        out[f"{block}.attn.c_attn.weight"], out[f"{block}.attn.c_attn.bias"] = (e, 3 * e), (3 * e,)
        out[f"{block}.attn.c_proj.weight"], out[f"{block}.attn.c_proj.bias"] = (e, e), (e,)
        out[f"{block}.ln_2.weight"], out[f"{block}.ln_2.bias"] = (e,), (e,)
        out[f"{block}.mlp.c_fc.weight"], out[f"{block}.mlp.c_fc.bias"] = (e, 4 * e), (4 * e,)
        out[f"{block}.mlp.c_proj.weight"], out[f"{block}.mlp.c_proj.bias"] = (4 * e, e), (e,)
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = (e,), (e,)
    return out


def gpt2_vocab_size(config: dict[str, Any] | GPT2ArchConfig | None) -> int:
    """The vocabulary size of the tokenizer a gpt2 config names, without loading transformers (which
    imports torch): for BPE, the ``tokenizers`` library reads the same files transformers' fast GPT-2
    tokenizer is built from, plus ``<|endoftext|>`` where the vocab lacks it (workers.engine.text)."""
    from workers.engine.text import BpeTokenizer, ByteTokenizer

    cfg = config if isinstance(config, GPT2ArchConfig) else GPT2ArchConfig.model_validate(config or {})
    if cfg.tokenizer == "byte":
        return ByteTokenizer().vocab_size
    from tokenizers import Tokenizer
    from tokenizers.models import BPE

    tokenizer = Tokenizer(BPE.from_file(cfg.bpe_vocab_path, cfg.bpe_merges_path))
    tokenizer.add_special_tokens([BpeTokenizer.EOS])
    return tokenizer.get_vocab_size(with_added_tokens=True)


# ---- the built-ins ----------------------------------------------------------------------------

MLP = Architecture(
    name="mlp",
    description="Fully connected network on flattened inputs.",
    config_model=MLPConfig,
    build=_builder("mlp", "build_mlp"),
    layout=mlp_layout,
)
CNN_SMALL = Architecture(
    name="cnn_small",
    description="Small conv net: 3x3 conv + ReLU + max-pool blocks, then two linear layers.",
    config_model=CNNSmallConfig,
    build=_builder("cnn_small", "build_cnn_small"),
    layout=cnn_small_layout,
)
RESNET18 = Architecture(
    name="resnet18",
    description="CIFAR-style ResNet-18 (3x3 stem, no max-pool) with configurable base width.",
    config_model=ResNet18Config,
    build=_builder("resnet18", "build_resnet18"),
    layout=resnet18_layout,
)
GPT2 = Architecture(
    name="gpt2",
    description="GPT-2 causal language model (transformers GPT2LMHeadModel); classes are the vocabulary.",
    config_model=GPT2ArchConfig,
    build=_builder("gpt2", "build_gpt2_for"),
    kind="language_model",
    layout=gpt2_layout,
)
BUILTIN = (MLP, CNN_SMALL, RESNET18, GPT2)
