"""Shared tiny synthetic data for model tests (keeps every test a few seconds)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
