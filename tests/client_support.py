"""What the client tests share: a model registered through the client from weights made here (no
training job to wait for), and a client pointed at an API."""

from __future__ import annotations

import uuid

from tests.helpers import FAST_ARCH, FAST_RECIPE
from unlearnd_client import Client, Model
from unlearnd_client.retry import RetryPolicy

# Quick to give up in a test, but long enough to ride out a restart of the API (a few seconds).
TEST_RETRY = RetryPolicy(attempts=60, max_elapsed_s=90, initial_backoff_s=0.2, max_backoff_s=1.0)


def random_cnn_weights() -> bytes:
    """Untrained weights of the fast test architecture: a retrain from them is as quick as any."""
    import torch
    from safetensors.torch import save as save_safetensors

    from workers.engine.architectures import build_model

    torch.manual_seed(0)
    state = build_model(FAST_ARCH["architecture"], FAST_ARCH["config"], (8, 8), 10).state_dict()
    return save_safetensors({k: v.contiguous() for k, v in state.items()})


def upload_fast_model(sdk: Client, dataset_id: str) -> Model:
    spec = {"name": f"client-{uuid.uuid4().hex[:8]}", "dataset_id": dataset_id, **FAST_ARCH, "recipe": FAST_RECIPE}
    return sdk.models.upload(spec, random_cnn_weights())
