"""Writes killed at any point: the destination holds the old or the new pack, never nothing;
SIGTERM cleans up like SIGINT; what a SIGKILL left is removed by the next run."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import require

from . import attacks


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("dest", ["p", "p.edgepack"], ids=["directory", "archive"])
def test_killed_pack_write(bench, dest, sig):
    total = attacks.write_points(bench, dest)
    # the last points are the renames; the others are spread over the copy
    points = sorted({*range(max(1, total - 4), total + 1), *range(1, total, max(1, total // 4))})
    for point in points:
        outcome, detail = attacks.killed_write(bench, dest, sig, point)
        assert outcome == "clean", f"killed at {point}/{total}: {detail}"


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 2, 3])  # which scratch folder: quantize's or evaluation's
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_quantize_leaves_no_temp_folders(bench, sig, nth):
    require("onnxruntime.quantization")
    outcome, detail = attacks.killed_quantize(bench, sig, nth)
    assert outcome == "clean", detail
