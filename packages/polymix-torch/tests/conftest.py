"""Shared test settings: one intra-op thread (the CI machine is small and shared)."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
