"""Shared fixtures: tiny models built in code; CI (EDGEPACK_REQUIRE_ALL=1) may not skip extras."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep microbenchmark caches and latency-estimate histories out of the user's ~/.cache."""
    os.environ["EDGEPACK_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


def require(module: str):
    """Import an optional package; skip without it, but fail under EDGEPACK_REQUIRE_ALL=1 (CI)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("EDGEPACK_REQUIRE_ALL") == "1":
            pytest.fail(f"{module} is required in CI but cannot be imported: {exc}")
        pytest.skip(f"{module} is not installed")


def classifier_onnx(path, input_shape: tuple[int, ...] = (4,), classes: int = 3, seed: int = 0):
    """x[batch, *input_shape] -> logits[batch, classes] = relu(flat(x) @ W1 + b1) @ W2.

    Returns a numpy reference function computing the same logits.
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = int(np.prod(input_shape))
    w1 = rng.normal(size=(features, 16)).astype(np.float32)
    b1 = rng.normal(size=(16,)).astype(np.float32)
    w2 = rng.normal(size=(16, classes)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))

    def reference(x: np.ndarray) -> np.ndarray:
        return np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0) @ w2

    return reference


def text_classifier_onnx(path, vocab_size: int, classes: int = 2, seed: int = 0):
    """input_ids/attention_mask/token_type_ids[batch, seq] -> logits: masked mean of embeddings."""
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(vocab_size, 8)).astype(np.float32)
    w = rng.normal(size=(8, classes)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["token_type_ids"], ["t"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["m", "t"], ["mt"]),  # token types are all 0: keeps the input live
        helper.make_node("Unsqueeze", ["mt", "axis"], ["m3"]),
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "axis1"], ["s"], keepdims=0),
        helper.make_node("MatMul", ["s", "w"], ["logits"]),
    ]
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        nodes,
        "text",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, dims)
            for n in ("input_ids", "attention_mask", "token_type_ids")
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [
            numpy_helper.from_array(emb, "emb"),
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([2], np.int64), "axis"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def tiny_bert_classifier(num_labels: int = 2):
    """A randomly initialised 2-layer BERT classifier (hidden 32, vocab 100), seeded."""
    torch = require("torch")
    transformers = require("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
    )
    return transformers.BertForSequenceClassification(config).eval()


def save_tiny_bert(folder, labels=None):
    """A random 2-layer BERT classifier and its WordPiece tokenizer, saved as an HF folder;
    labels: class names for its id2label."""
    transformers = require("transformers")
    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot"]
    words += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    (folder / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(100 - len(words))]))
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    model = tiny_bert_classifier()
    if labels:
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {name: i for i, name in enumerate(labels)}
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    """(path to a tiny ONNX classifier, numpy reference function)."""
    path = tmp_path_factory.mktemp("models") / "classifier.onnx"
    reference = classifier_onnx(path)
    return path, reference


@pytest.fixture(scope="session")
def image_classifier(tmp_path_factory):
    """(path to a tiny ONNX classifier of 1x4x4 images, numpy reference function)."""
    path = tmp_path_factory.mktemp("models") / "image.onnx"
    reference = classifier_onnx(path, input_shape=(1, 4, 4))
    return path, reference


@pytest.fixture(scope="session")
def classifier_tflite(tmp_path_factory):
    """A LiteRT classifier converted by litert-torch, with its torch reference function."""
    torch = require("torch")
    litert_torch = require("litert_torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).eval()
    path = tmp_path_factory.mktemp("tflite") / "classifier.tflite"
    litert_torch.convert(module, (torch.ones(1, 4),)).export(str(path))

    def reference(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return path, reference
