"""One Workbench of untouched packs for the whole attack suite; hypothesis runs derandomized
with a fixed budget, so the suite takes the same time and finds the same things on every run."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import require

settings.register_profile(
    "attack",
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    require("onnx")
    from .attacks import Workbench

    return Workbench(tmp_path_factory.mktemp("attack"))
