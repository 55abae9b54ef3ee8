"""Training tests run one torch thread each: CI has two cores shared by the whole suite."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every training test runs with one torch thread (the root conftest's fixture)."""
