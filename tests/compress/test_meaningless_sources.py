"""A source that cannot be a useful pack is refused before anything is written (issue 15.1):
a Hugging Face folder whose task head was never trained, a model at chance on the evaluation
data; and candidates are scored the way the device runs them (batch 1, its own padding)."""

from __future__ import annotations

import numpy as np
import pytest

from edgepack.compress.data import ArrayDataset
from edgepack.compress.evaluate import ChanceLevelError, evaluation_conditions, run_batched
from edgepack.compress.quantize import Budget, DynamicOptions, quantize
from tests.conftest import require, save_tiny_bert, text_classifier_onnx


def test_a_base_checkpoint_without_a_trained_head_is_refused_with_the_finetune_command(tmp_path):
    from edgepack.compress.export_onnx import UntrainedHeadError, export_hf, load_hf

    transformers = require("transformers")
    trained = save_tiny_bert(tmp_path / "trained")
    base = tmp_path / "minilm"
    # What a hub's sentence-embedding MiniLM folder holds: the encoder, no classifier.
    transformers.BertModel.from_pretrained(str(trained)).save_pretrained(str(base))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (base / name).write_bytes((trained / name).read_bytes())
    with pytest.raises(UntrainedHeadError, match=r"classifier\.weight.*edgepack finetune"):
        load_hf(base, "text-classification")
    with pytest.raises(UntrainedHeadError):  # the Optimum export path loads through load_hf
        export_hf(base, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert load_hf(trained, "text-classification").training is False  # a trained head loads


def test_a_model_at_chance_on_the_evaluation_data_is_refused(tmp_path):
    model = tmp_path / "text.onnx"
    text_classifier_onnx(model, vocab_size=20)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (40, 6))
    data = ArrayDataset(
        {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
    )
    from edgepack.compress.evaluate import run_batched as run

    predicted = run(model, data, progress=False).argmax(-1)
    wrong = ArrayDataset(data.inputs, 1 - predicted)  # every answer wrong: 0% accuracy
    with pytest.raises(ChanceLevelError, match=r"0\.0% fp32 accuracy.*edgepack finetune"):
        quantize(model, tmp_path / "int8.onnx", DynamicOptions(), eval_data=wrong, progress=False)
    assert not (tmp_path / "int8.onnx").exists()
    right = ArrayDataset(data.inputs, predicted)
    report = quantize(
        model,
        tmp_path / "int8.onnx",
        DynamicOptions(),
        eval_data=right,
        budget=Budget(max_drop=100.0, min_speedup=None),
        progress=False,
    )
    # the figures say how they were measured: one sample at a time, padded as the pack pads
    assert report.fp32["eval_batch_size"] == 1
    assert report.fp32["eval_padding"] == "longest"
    assert evaluation_conditions() == {"eval_batch_size": 1, "eval_padding": "longest"}


def _padding_counter(path):
    """input_ids/attention_mask[batch, sequence] -> [batch, 1]: how many padded positions the
    model was given, so a test sees the padding an evaluation fed it."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "m"], ["pad"]),
        helper.make_node("ReduceSum", ["pad", "axis"], ["count"], keepdims=1),
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["ids", "axis"], ["top"], keepdims=1),
        helper.make_node("Mul", ["top", "zero"], ["unused"]),
        helper.make_node("Add", ["count", "unused"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pads",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_evaluation_feeds_each_sample_as_the_device_does_without_the_datasets_padding(tmp_path):
    _padding_counter(tmp_path / "pads.onnx")
    lengths = np.array([2, 5, 3, 8])
    mask = (np.arange(8) < lengths[:, None]).astype(np.int64)  # padded to the longest, 8
    data = ArrayDataset({"input_ids": mask * 7, "attention_mask": mask})
    device = run_batched(tmp_path / "pads.onnx", data, progress=False)
    assert device.ravel().tolist() == [0, 0, 0, 0]  # batch 1: each text alone, no padding
    batched = run_batched(tmp_path / "pads.onnx", data, batch_size=2, progress=False)
    assert batched.ravel().tolist() == [3, 0, 5, 0]  # padded to each batch's longest text


def test_a_hugging_face_folder_without_a_task_is_told_which_tasks_there_are(tmp_path):
    from edgepack.compress.export_onnx import load_hf
    from edgepack.runtime import InputError

    folder = save_tiny_bert(tmp_path / "bert")
    with pytest.raises(InputError, match="--task text-classification"):
        load_hf(folder, "other")  # what `edgepack quantize FOLDER` passes without --task
