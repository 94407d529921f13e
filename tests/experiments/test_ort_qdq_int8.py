"""experiments/ort_qdq_int8.py times the ops it says it times."""

import numpy as np
import pytest

from experiments.ort_qdq_int8 import ELEMENTWISE, elementwise_model, main, session


@pytest.mark.parametrize("op", ELEMENTWISE)
def test_each_elementwise_model_computes_its_op(op):
    rng = np.random.default_rng(0)
    if op == "DequantizeLinear":
        x = rng.integers(-100, 100, 64).astype(np.int8)
        expected = x.astype(np.float32) * np.float32(0.05)
    else:
        x = (rng.random(64, np.float32) - 0.5) * 20
        expected = {
            "QuantizeLinear": np.clip(np.rint(x / np.float32(0.05)), -128, 127),
            "Clip": np.clip(x, 0, 6),
            "Add": x + x,
        }[op]
    (y,) = session(elementwise_model(op, 64), 1).run(None, {"x": x})
    np.testing.assert_allclose(y.astype(np.float32), expected, rtol=1e-6, atol=1e-6)


def test_the_elementwise_table_has_a_row_per_op_and_size(capsys):
    main(["--elementwise", "--rounds", "2", "--threads", "2", "--sizes", "1000", "400000"])
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split()[:2] for r in rows] == [
        [op, n] for op in ELEMENTWISE for n in ("1000", "400000")
    ]
    threads = {tuple(r.split()[:2]): int(r.split()[-1]) for r in rows}
    assert threads[("Clip", "1000")] == 1  # far under the split's threshold
    assert threads[("Clip", "400000")] == 2
    assert threads[("DequantizeLinear", "400000")] == 1  # never split
