"""experiments/mlas_threads.py builds the layers it says it times."""

import numpy as np
import pytest

from edgepack.device_profiles.cores import runtime_model
from experiments import mlas_threads
from experiments.mlas_threads import (
    CHAIN,
    MEMORY_LAYERS,
    THREAD_MACS,
    depthwise_model,
    pointwise_chain,
    session,
)


@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (3, 2), (5, 1)])
def test_the_layer_is_a_depthwise_convolution_with_the_stated_output(tmp_path, kernel, stride):
    import onnx

    path = tmp_path / "dw.onnx"
    onnx.save(depthwise_model(4, 6, kernel, stride), path)
    x = np.random.default_rng(0).standard_normal((1, 4, 6 * stride, 6 * stride), np.float32)
    (y,) = session(path, 1).run(None, {"x": x})
    assert y.shape == (1, 4, 6, 6)
    # The same convolution in numpy: each channel with its own filter, zero padding.
    w = onnx.numpy_helper.to_array(onnx.load(path).graph.initializer[0])
    pad = kernel // 2
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    expected = np.zeros_like(y)
    for c in range(4):
        for i in range(6):
            for j in range(6):
                window = padded[
                    0, c, i * stride : i * stride + kernel, j * stride : j * stride + kernel
                ]
                expected[0, c, i, j] = (window * w[c, 0]).sum()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_the_pointwise_chain_is_its_one_by_one_convolutions_in_turn(tmp_path):
    import onnx

    path = tmp_path / "pw.onnx"
    onnx.save(pointwise_chain(3, 4), path)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4), np.float32)
    (y,) = session(path, 1).run(None, {"x": x})
    expected = x[0].reshape(3, 16)
    weights = onnx.load(path).graph.initializer
    assert len(weights) == CHAIN
    for w in weights:
        expected = onnx.numpy_helper.to_array(w).reshape(3, 3) @ expected
    np.testing.assert_allclose(y[0].reshape(3, 16), expected, rtol=1e-4, atol=1e-4)


def test_its_thread_rule_is_the_estimators():
    assert runtime_model("onnxruntime").fp32_thread_macs == THREAD_MACS


def test_the_memory_layers_take_the_bytes_the_script_says():
    """--memory's layers: input + output of about 1.6 MB, 26 MB and 1 GB at every map size."""
    for side, channel_counts in MEMORY_LAYERS.items():
        sizes = [2 * 4 * c * side * side / 1e6 for c in channel_counts]
        assert sizes == pytest.approx([1.6, 26, 1000], rel=0.1), side


def test_memory_mode_prints_a_row_per_layer_with_the_time_it_added(monkeypatch, capsys):
    monkeypatch.setattr(mlas_threads, "MEMORY_LAYERS", {8: (2, 64)})
    mlas_threads.memory_main(rounds=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("onnxruntime ")
    first, second = lines[2].split(), lines[3].split()
    assert first[:2] == ["dw", "2x8x8"] and second[:2] == ["dw", "64x8x8"]
    assert float(first[-3]) == 0.0  # the first layer is the baseline
    assert float(second[-1]) > 0  # a one-thread copy rate, GB/s
