from __future__ import annotations

import pytest

from tests.helpers import register_digits, train_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def digits_dataset(client) -> dict:
    return register_digits(client)


@pytest.fixture(scope="module")
def model(client, digits_dataset) -> dict:
    """A model trained by the service for this test module (version 1)."""
    return train_model(client, digits_dataset["id"])
