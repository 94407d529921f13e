"""The cost summary on tiny ONNX graphs whose FLOPs and bytes are worked out by hand."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tests.conftest import require

onnx = require("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgepack.compress.cost import (  # noqa: E402
    OP_CLASSES,
    CostError,
    cost_or_none,
    cost_summary,
    main,
    tflite_cost_summary,
)
from edgepack.packing import assemble_pack, describe_model_file  # noqa: E402
from edgepack.runtime.errors import EdgepackError  # noqa: E402
from edgepack.schema import schema_errors  # noqa: E402

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _ops(cost):
    """The summary's rows added up per (op class, precision), over their size ranges."""
    merged: dict = {}
    for op in cost["ops"]:
        row = merged.get((op["op_class"], op["precision"]))
        sums = (
            {k: row[k] + op[k] for k in ("count", "flops", "bytes", "groups") if k in op}
            if row
            else {}
        )
        merged[(op["op_class"], op["precision"])] = {**op, **sums}
    return merged


def _array(*shape, dtype=np.float32):
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def test_matmul_binds_symbolic_batch_and_counts_macs_twice():
    model = _model(
        [helper.make_node("MatMul", ["a", "w"], ["y"])],
        [helper.make_tensor_value_info("a", F, ["batch", 4, 8])],
        [helper.make_tensor_value_info("y", F, ["batch", 4, 16])],
        [numpy_helper.from_array(_array(8, 16), "w")],
    )
    cost = cost_summary(model, {"batch": 2})
    # 2 x (2*4 rows) x 8 inner x 16 columns; bytes: a 2*4*8, w 8*16, y 2*4*16 floats.
    assert cost["flops"] == 2 * 2 * 4 * 8 * 16
    assert cost["ops"] == [
        {
            "op_class": "gemm",
            "precision": "fp32",
            "count": 1,
            "flops": 2048.0,
            "bytes": 4 * (64 + 128 + 128),
        }
    ]
    assert cost["parameters"] == 128
    assert cost["shape_assumptions"] == {"batch": 2}


def test_dim_names_take_defaults_by_role_and_unknown_names_are_refused():
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", F, ["batch_size", "seq_len"])],
        [helper.make_tensor_value_info("y", F, ["batch_size", "seq_len"])],
        [],
    )
    cost = cost_summary(model)
    assert cost["shape_assumptions"] == {"batch_size": 1, "seq_len": 128}
    assert _ops(cost)[("elementwise", "fp32")]["bytes"] == 2 * 128 * 4
    assert cost_summary(model, {"sequence": 16})["shape_assumptions"]["seq_len"] == 16

    odd = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", F, ["s0"])],
        [helper.make_tensor_value_info("y", F, ["s0"])],
        [],
    )
    with pytest.raises(EdgepackError, match="'s0'.*shape_assumptions"):
        cost_summary(odd)
    assert cost_summary(odd, {"s0": 5})["ops"][0]["bytes"] == 40


def test_conv_and_depthwise_conv():
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    dw = helper.make_node("Conv", ["y", "dw"], ["z"], pads=[1, 1, 1, 1], group=4)
    model = _model(
        [conv, dw],
        [helper.make_tensor_value_info("x", F, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", F, [1, 4, 8, 8])],
        [
            numpy_helper.from_array(_array(4, 3, 3, 3), "w"),
            numpy_helper.from_array(_array(4), "b"),
            numpy_helper.from_array(_array(4, 1, 3, 3), "dw"),
        ],
    )
    ops = _ops(cost_summary(model))
    # 4x8x8 outputs, each 3 channels x 3x3 MACs; depthwise: 1 channel x 3x3 MACs.
    assert ops[("conv", "fp32")]["flops"] == 2 * 256 * 27
    assert ops[("conv", "fp32")]["bytes"] == 4 * (192 + 108 + 4 + 256)
    assert ops[("depthwise_conv", "fp32")]["flops"] == 2 * 256 * 9
    assert ops[("depthwise_conv", "fp32")]["bytes"] == 4 * (256 + 36 + 256)


def test_qdq_graph_runs_int8_where_ort_folds_the_pairs():
    """x -> Q -> DQ -> MatMul(DQ(w int8)) -> Q -> DQ -> y: ONNX Runtime runs one int8 MatMul
    between a quantize at the input and a dequantize at the output."""
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.uint8), "z")
    wzero = numpy_helper.from_array(np.array(0, np.int8), "wz")
    weight = numpy_helper.from_array(_array(8, 4, dtype=np.int8), "wq")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "wz"], ["wd"]),
        helper.make_node("MatMul", ["xd", "wd"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "s", "z"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["out"]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", F, [1, 8])],
        [helper.make_tensor_value_info("out", F, [1, 4])],
        [scale, zero, wzero, weight],
    )
    cost = cost_summary(model)
    ops = _ops(cost)
    assert set(ops) == {("gemm", "int8"), ("quantize", "fp32"), ("quantize", "int8")}
    # int8 reads x (8) and w (32 bytes), writes y (4 bytes); scales and zero points are not
    # parameters.
    assert ops[("gemm", "int8")] | {"bytes": 0} == {
        "op_class": "gemm",
        "precision": "int8",
        "count": 1,
        "flops": 2 * 8 * 4,
        "bytes": 0,
    }
    assert ops[("gemm", "int8")]["bytes"] == 8 + 32 + 4
    assert ops[("quantize", "fp32")]["count"] == 1  # Q(x): reads floats, writes uint8
    assert ops[("quantize", "fp32")]["bytes"] == 32 + 4 + 1 + 8
    assert ops[("quantize", "int8")]["bytes"] == 4 + 4 + 1 + 16  # DQ(y)
    assert cost["parameters"] == 32


def _executed_ops(path, tmp_path) -> dict[str, int]:
    """Op type -> nodes ONNX Runtime's CPU provider ran in one inference (its profiler)."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, {"x": np.random.default_rng(0).random((1, 4, 8, 8), np.float32)})
    with open(session.end_profiling()) as trace:
        events = json.load(trace)
    counts: dict[str, int] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            counts[op] = counts.get(op, 0) + 1
    return counts


@pytest.mark.parametrize("symmetric", [False, True])
def test_a_clamp_the_q_does_not_cover_runs_in_float_with_its_pairs(tmp_path, symmetric):
    """Conv -> ReLU6 -> Conv -> Relu, quantized by onnxruntime: with asymmetric activations the
    quantizer folds each clamp into the Q; with symmetric ones (zero point 0) the Q's range
    starts below 0, so ONNX Runtime keeps each clamp, in float, between a DQ and a Q that run.
    The summary counts what the session's profiler saw run."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    lo = numpy_helper.from_array(np.array(0, np.float32), "lo")
    hi = numpy_helper.from_array(np.array(6, np.float32), "hi")
    rng = np.random.default_rng(1)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3), np.float32), n)
               for n in ("w1", "w2")]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["y"]),
    ]
    source = tmp_path / "fp32.onnx"
    onnx.save(
        _model(nodes, [helper.make_tensor_value_info("x", F, [1, 4, 8, 8])],
               [helper.make_tensor_value_info("y", F, [1, 4, 8, 8])], [*weights, lo, hi]),
        source,
    )  # fmt: skip

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": rng.random((1, 4, 8, 8), np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.feeds, None)

    quantized = tmp_path / "int8.onnx"
    quantize_static(str(source), str(quantized), Feeds(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"ActivationSymmetric": symmetric})  # fmt: skip
    ran = _executed_ops(quantized, tmp_path)
    cost = cost_summary(quantized)
    ops = _ops(cost)
    assert any("2 Relu/Clip op(s)" in n for n in cost.get("notes", [])) == symmetric
    assert ran.get("QLinearConv") == ops[("conv", "int8")]["count"] == 2
    clamps = ran.get("Clip", 0) + ran.get("Relu", 0)
    assert clamps == (2 if symmetric else 0)
    assert ops.get(("elementwise", "fp32"), {}).get("count", 0) == clamps
    pairs = ran.get("QuantizeLinear", 0) + ran.get("DequantizeLinear", 0)
    counted = sum(ops[k]["count"] for k in ops if k[0] == "quantize")
    assert counted == pairs == (2 + 2 * clamps)  # the input's Q and the output's DQ besides


def test_dynamic_quantization_consumes_quantized_tensors():
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("MatMulInteger", ["xq", "wq", "xz", "wz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "ws"], ["y"]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", F, [2, 8])],
        [helper.make_tensor_value_info("y", F, [2, 4])],
        [
            numpy_helper.from_array(_array(8, 4, dtype=np.int8), "wq"),
            numpy_helper.from_array(np.array(0, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
        ],
    )
    ops = _ops(cost_summary(model))
    assert ops[("gemm", "int8")]["flops"] == 2 * 2 * 8 * 4
    # ONNX Runtime fuses the quantizer, the cast and the scale into one op
    # (DynamicQuantizeMatMul).
    assert set(ops) == {("gemm", "int8")} and ops[("gemm", "int8")]["count"] == 1


def test_summary_matches_the_manifest_schema_and_cli_prints_it(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    model = _model(
        [
            helper.make_node("MatMul", ["a", "w"], ["h"]),
            helper.make_node("Softmax", ["h"], ["y"], axis=-1),
        ],
        [helper.make_tensor_value_info("a", F, ["batch", 8])],
        [helper.make_tensor_value_info("y", F, ["batch", 16])],
        [numpy_helper.from_array(_array(8, 16), "w")],
    )
    onnx.save(model, str(path))
    cost = cost_summary(path)
    manifest = {
        "schema_version": "1.0",
        "name": "m",
        "edgepack_version": "0",
        "task": "other",
        "created": "",
        "files": [],
        "models": [
            {
                "path": "m.onnx",
                "format": "onnx",
                "precision": "fp32",
                "size_bytes": 1,
                "sha256": "0" * 64,
                "backends": ["onnxruntime"],
                "inputs": [{"name": "a", "dtype": "float32", "shape": ["batch", 8]}],
                "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 16]}],
                "cost": cost,
            }
        ],
    }
    assert schema_errors(manifest) == []
    assert main([str(path), "--json", "--assume", "batch=4"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["shape_assumptions"] == {"batch": 4}
    assert main([str(path)]) == 0
    assert "softmax" in capsys.readouterr().out


def test_a_non_max_suppression_is_counted_by_its_bytes_and_marks_the_summary_incomplete():
    """Its work depends on the scores, not the shapes: the summary says so, without the warning
    an op it could not size gets."""
    model = _model(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "n", "iou", "min"], ["keep"])],
        [helper.make_tensor_value_info("boxes", F, [1, 50, 4]),
         helper.make_tensor_value_info("scores", F, [1, 3, 50])],
        [helper.make_tensor_value_info("keep", TensorProto.INT64, ["selected", 3])],
        [numpy_helper.from_array(np.array([10], np.int64), "n"),
         numpy_helper.from_array(np.array([0.5], np.float32), "iou"),
         numpy_helper.from_array(np.array([0.1], np.float32), "min")],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost = cost_summary(model)
    assert [(r["op_class"], r["count"]) for r in cost["ops"]] == [("nms", 1)]
    assert cost["ops"][0]["bytes"] == 4 * (50 * 4 + 3 * 50 + 2) + 8  # its inputs; keep is unsized
    assert cost["complete"] is False
    assert cost["notes"] == [
        "NonMaxSuppression: non-max suppression, whose time depends on how many boxes pass its "
        "score threshold and on its kind, not on tensor shapes; counted by the bytes it moves only"
    ]


def test_every_class_in_the_table_has_a_flop_rule():
    from edgepack.compress.cost import CLASS_FLOPS, CLASS_ORDER

    assert set(OP_CLASSES.values()) <= set(CLASS_FLOPS) == set(CLASS_ORDER)


def test_costs_what_onnx_runtime_runs_not_what_the_file_lists():
    """Constant subgraphs are folded, a conv's activation fuses into it, views copy nothing and
    a lookup reads only the rows it returns."""
    nodes = [
        helper.make_node("Identity", ["w0"], ["w"]),  # the exporter's shared-weight alias
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["flat"]),
        helper.make_node("Gather", ["table", "ids"], ["rows"]),
        helper.make_node("Add", ["flat", "rows"], ["y"]),
    ]
    model = _model(
        nodes,
        [
            helper.make_tensor_value_info("x", F, [1, 2, 4, 4]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", F, [2, 16])],
        [
            numpy_helper.from_array(_array(2, 2, 3, 3), "w0"),
            numpy_helper.from_array(np.array([2, 16], np.int64), "shape"),
            numpy_helper.from_array(_array(1000, 16), "table"),
        ],
    )
    ops = _ops(cost_summary(model))
    assert set(ops) == {
        ("conv", "fp32"),
        ("layout", "fp32"),
        ("gather", "fp32"),
        ("elementwise", "fp32"),
    }
    assert ops[("conv", "fp32")]["count"] == 1  # Relu fused, Identity folded
    assert ops[("layout", "fp32")]["bytes"] == 0
    # Gather: two 16-float rows read and written, plus the two int64 ids.
    assert ops[("gather", "fp32")]["bytes"] == 2 * (2 * 16 * 4) + 2 * 8
    assert ops[("elementwise", "fp32")]["count"] == 1


def test_a_tflite_graph_is_counted_from_its_op_list(classifier_tflite, tmp_path, capsys):
    """Linear(4, 16) -> ReLU -> Linear(16, 3): 2 x (4 x 16 + 16 x 3) FLOPs in two FULLY_CONNECTED
    ops (the ReLU fuses into the first), and the weights and biases as parameters."""
    path, _ = classifier_tflite
    cost = tflite_cost_summary(path)
    entry = describe_model_file(path, pack_path="model.tflite")
    entry.cost = cost
    manifest = assemble_pack(tmp_path / "lite", [(path, entry)])  # validates against the schema
    assert manifest.models[0].cost == cost
    gemm = _ops(cost)[("gemm", "fp32")]
    assert gemm["count"] == 2 and gemm["flops"] == 2 * (4 * 16 + 16 * 3)
    assert cost["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == cost
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(EdgepackError, match="not a TFLite model LiteRT can read"):
        tflite_cost_summary(bad)


@pytest.fixture(scope="module")
def tiny_bert_export(tmp_path_factory):
    """(model.onnx of the tiny BERT exported as the pipeline exports it, its HF config)."""
    require("optimum")
    from edgepack.compress.export_onnx import export_hf
    from tests.conftest import save_tiny_bert

    root = tmp_path_factory.mktemp("tiny-bert")
    save_tiny_bert(root / "hf")
    export_hf(root / "hf", root / "onnx", opset=18)
    return root / "onnx" / "model.onnx", json.loads((root / "hf" / "config.json").read_text())


def test_a_bert_export_is_sized_in_full_and_its_matmuls_cost_what_its_config_says(
    tiny_bert_export,
):
    path, config = tiny_bert_export
    seq = config["max_position_embeddings"]  # the longest input its position table holds
    h, ffn, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "some ops could not be sized" fails the test
        cost = cost_summary(path, {"sequence": seq})
    assert "complete" not in cost and "notes" not in cost
    assert cost["shape_assumptions"] == {"batch_size": 1, "sequence_length": seq}
    # Per layer: Q, K, V, output and the two FFN projections on every token, then Q.K^T and
    # attention.V over all heads; the pooler and classifier see the [CLS] token only.
    linear = 2 * seq * layers * (4 * h * h + 2 * h * ffn)
    attention = layers * 2 * (2 * seq * seq * h)
    labels = onnx.load(path).graph.output[0].type.tensor_type.shape.dim[1].dim_value
    head = 2 * (h * h + h * labels)
    assert _ops(cost)["gemm", "fp32"]["flops"] == linear + attention + head


@pytest.mark.parametrize("assume", [{}, {"sequence": 65}])
def test_a_sequence_longer_than_the_position_table_is_refused_not_undercounted(
    tiny_bert_export, assume
):
    # The default sequence (128) and 65 exceed the tiny BERT's 64 positions: the sliced position
    # embeddings no longer add to the token embeddings, and ONNX Runtime refuses such inputs.
    path, _ = tiny_bert_export
    with pytest.raises(CostError, match=r"does not run at .*'sequence_length': .*Add_1"):
        cost_summary(path, assume)
    cost, why = cost_or_none(path, assume)
    assert cost is None and "--assume sequence=N" in why
