"""Export to ONNX: plain modules and Hugging Face folders, checked through the runtime."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from edgepack.compress.errors import ExportError
from edgepack.compress.export_onnx import export_hf, export_onnx
from edgepack.runtime import InputError
from tests.conftest import save_tiny_bert, tiny_bert_classifier


@torch.library.custom_op("edgepack_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class Mystery(nn.Module):
    def forward(self, x):
        return mystery(x)


class Spectral(nn.Module):
    def forward(self, x):
        return torch.linalg.svd(x)[1]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
    ).eval()


def test_cnn_export_is_checked_on_another_batch_size(tmp_path):
    example = {"pixels": torch.randn(2, 1, 8, 8)}
    check = {"pixels": torch.randn(5, 1, 8, 8)}
    result = export_onnx(small_cnn(), example, tmp_path / "cnn.onnx", check_inputs=check)
    assert result.check.samples == 5
    assert result.check.max_abs_diff < 1e-4
    assert result.check.argmax_agreement == 100.0
    graph = onnx.load(str(result.path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [o.name for o in graph.output] == ["logits"]
    assert result.check.to_dict()["kind"] == "export"


def test_bert_export_with_dynamic_batch_and_sequence(tmp_path):
    names = ("input_ids", "attention_mask")
    example = {"input_ids": torch.randint(0, 100, (2, 16)), "attention_mask": torch.ones(2, 16)}
    example["attention_mask"] = example["attention_mask"].long()
    check = {
        "input_ids": torch.randint(0, 100, (3, 24)),
        "attention_mask": torch.ones(3, 24).long(),
    }
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    result = export_onnx(
        tiny_bert_classifier(),
        example,
        tmp_path / "bert.onnx",
        dynamic_axes=axes,
        check_inputs=check,
    )
    assert result.check.max_abs_diff < 1e-4
    assert result.check.samples == 3
    matmuls = [n.name for n in onnx.load(str(result.path)).graph.node if n.op_type == "MatMul"]
    assert "/bert/encoder/layer.0/attention/self/query/MatMul" in matmuls  # module paths


def test_unsupported_custom_op_names_op_and_module(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), Mystery())).eval()
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError) as info:
        export_onnx(model, {"x": torch.randn(2, 4)}, path)
    message = str(info.value)
    assert "edgepack_test::mystery" in message
    assert "module '1.1' (Mystery)" in message
    assert not path.exists()


def test_unsupported_aten_op_names_op_and_module(tmp_path):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.spectrum = Spectral()

        def forward(self, x):
            return self.spectrum(self.proj(x))

    with pytest.raises(ExportError, match=r"aten::linalg_svd in module 'spectrum' \(Spectral\)"):
        export_onnx(Model().eval(), {"x": torch.randn(2, 4)}, tmp_path / "m.onnx")


def test_export_hf_text_classification(tmp_path):
    save_tiny_bert(tmp_path / "hf")
    result = export_hf(tmp_path / "hf", tmp_path / "onnx", check_inputs=["good film", "bad plot"])
    assert result.path == tmp_path / "onnx" / "model.onnx"
    assert result.check.max_abs_diff < 1e-4
    assert result.check.samples == 2
    assert {f.name for f in result.files} >= {"tokenizer.json", "config.json"}
    model = onnx.load(str(result.path))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(dims), dims  # batch and sequence are both dynamic


def test_export_hf_image_classification(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path / "vit"
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    result = export_hf(folder, tmp_path / "onnx", task="image-classification")
    assert result.check.max_abs_diff < 1e-4
    assert "preprocessor_config.json" in {f.name for f in result.files}


def test_export_hf_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(InputError, match="not a Hugging Face model folder"):
        export_hf(tmp_path, tmp_path / "out")
    with pytest.raises(InputError, match="unsupported task"):
        export_hf(tmp_path, tmp_path / "out", task="object-detection")


def test_check_catches_a_wrong_export(tmp_path):
    class Drift(nn.Module):
        """Traced once, the Python branch freezes: other inputs then disagree with PyTorch."""

        def forward(self, x):
            return x * 2 if float(x.sum()) > 0 else x * -1

    example = {"x": torch.ones(1, 3)}
    check = {"x": -torch.ones(1, 3)}
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(Drift(), example, tmp_path / "d.onnx", check_inputs=check)


def test_keyword_inputs_in_a_tokenizers_order_keep_their_names(tmp_path):
    # A tokenizer gives input_ids, token_type_ids, attention_mask; BERT's forward takes the mask
    # second. Named by the dict's order, the graph's mask input would be called token_type_ids.
    example = {
        "input_ids": torch.randint(0, 100, (2, 8)),
        "token_type_ids": torch.zeros(2, 8, dtype=torch.long),
        "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
    }
    axes = {n: {0: "batch", 1: "sequence"} for n in example} | {"logits": {0: "batch"}}
    result = export_onnx(tiny_bert_classifier(), example, tmp_path / "bert.onnx", dynamic_axes=axes)
    assert result.check.max_abs_diff < 1e-4
    names = [i.name for i in onnx.load(str(result.path)).graph.input]
    assert names == ["input_ids", "attention_mask", "token_type_ids"]
