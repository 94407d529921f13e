"""Loading and running packs: backends, input checks, thread count, predictions."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgepack.runtime as ep
from edgepack.packing import assemble_pack, describe_model_file
from tests import packs

X = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_pack(tmp_path_factory, classifier):
    dest = tmp_path_factory.mktemp("packs") / "clf.edgepack"
    assemble_pack(
        dest,
        [classifier[0]],
        task="other",
        postprocessing={"output_name": "logits", "softmax": True, "labels": ["a", "b", "c"]},
    )
    return dest


@pytest.fixture(scope="module")
def dual_pack(tmp_path_factory, classifier, classifier_tflite):
    """A pack with an ONNX and a TFLite model whose inputs share the logical name 'x'."""
    tflite_path, _ = classifier_tflite
    entry = describe_model_file(
        tflite_path,
        names={"serving_default_args_0": "x", "serving_default_output_0_output": "logits"},
    )
    dest = tmp_path_factory.mktemp("packs") / "dual"
    assemble_pack(dest, [classifier[0], (tflite_path, entry)])
    return dest


def test_run_matches_bare_onnxruntime(onnx_pack, classifier):
    session = ort.InferenceSession(str(classifier[0]), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": X})[0]
    out = ep.load(onnx_pack, threads=1).run({"x": X})
    assert list(out) == ["logits"]
    np.testing.assert_array_equal(out["logits"], expected)


def test_backend_and_threads_are_explicit_and_reported(onnx_pack):
    model = ep.load(onnx_pack, backend="onnxruntime", threads=2)
    assert model.describe() == {
        "pack": "clf",
        "model_file": "classifier.onnx",
        "format": "onnx",
        "precision": "fp32",
        "backend": "onnxruntime",
        "providers": ["CPUExecutionProvider"],
        "threads": 2,
    }
    assert ep.load(onnx_pack).threads == ep.default_threads()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"y": X}, r"missing input\(s\) \['x'\] and unknown input\(s\) \['y'\].*x float32"),
        ({"x": X, "z": X}, r"unknown input\(s\) \['z'\]"),
        ({"x": X.astype(np.int32)}, "dtype int32; expected float32"),
        ({"x": X[0]}, r"rank 1\); expected rank 2"),
        ({"x": np.zeros((2, 5), np.float32)}, r"axis 1 must be 4"),
        ({"x": np.full((1, 4), np.nan, np.float32)}, "NaN or inf"),
        ({"x": np.full((1, 4), np.inf, np.float32)}, "NaN or inf"),
        ({"x": np.array([["a"] * 4])}, "dtype <U1"),
    ],
)
def test_bad_inputs_get_clear_errors(onnx_pack, inputs, message):
    with pytest.raises(ep.InputError, match=message):
        ep.load(onnx_pack, threads=1).run(inputs)


def test_float64_and_lists_are_accepted_as_float32(onnx_pack):
    model = ep.load(onnx_pack, threads=1)
    expected = model.run({"x": X})["logits"]
    np.testing.assert_allclose(model.run({"x": X.astype(np.float64)})["logits"], expected)
    np.testing.assert_allclose(model.run({"x": X.tolist()})["logits"], expected)


def test_bad_load_arguments(onnx_pack):
    with pytest.raises(ep.BackendUnavailableError, match="unknown backend 'tensorrt'"):
        ep.load(onnx_pack, backend="tensorrt")
    with pytest.raises(ep.BackendUnavailableError, match="no model for backend 'litert'"):
        ep.load(onnx_pack, backend="litert")
    with pytest.raises(ep.InputError, match="threads must be a positive integer"):
        ep.load(onnx_pack, threads=0)
    with pytest.raises(ep.BackendUnavailableError, match="CUDAExecutionProvider.*not available"):
        ep.load(onnx_pack, providers=["CUDAExecutionProvider"])
    with pytest.raises(ep.InputError, match="no model file 'other.onnx'"):
        ep.load(onnx_pack, model_file="other.onnx")


def test_both_backends_run_a_dual_pack_by_name(dual_pack, classifier, classifier_tflite):
    onnx_model = ep.load(dual_pack, backend="onnxruntime", threads=1)
    tflite_model = ep.load(dual_pack, backend="litert", threads=1)
    assert tflite_model.describe()["backend"] == "litert"
    assert tflite_model.describe()["model_file"] == "classifier.tflite"
    x = X[:1]
    np.testing.assert_allclose(onnx_model.run({"x": x})["logits"], classifier[1](x), atol=1e-5)
    np.testing.assert_allclose(
        tflite_model.run({"x": x})["logits"], classifier_tflite[1](x), rtol=1e-4, atol=1e-5
    )
    assert ep.load(dual_pack).backend == "onnxruntime"
    assert ep.load(dual_pack, backend="tflite").backend == "litert"
    assert ep.load(dual_pack, backend="onnx").backend == "onnxruntime"


def test_litert_static_batch_is_enforced_by_name(dual_pack):
    """litert-torch exports a fixed batch of 1: other batch sizes get a clear error, not a crash."""
    model = ep.load(dual_pack, backend="litert", threads=1)
    assert model.entry.inputs[0].shape == [1, 4]
    with pytest.raises(ep.InputError, match=r"expected \[1, 4\] \(axis 0 must be 1\)"):
        model.run({"x": X})


@pytest.fixture(scope="module")
def image_pack(tmp_path_factory, image_classifier):
    dest = tmp_path_factory.mktemp("packs") / "img.edgepack"
    return packs.image_pack(dest, image_classifier[0], ["a", "b", "c"])


def test_image_predict_normalises_applies_softmax_and_labels(image_pack, image_classifier):
    images = np.random.default_rng(3).integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    predictions = ep.load(image_pack, threads=1).predict(list(images))
    x = ((images / 255 - 0.5) / 0.25).astype(np.float32)[:, None]
    logits = image_classifier[1](x)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert [p.index for p in predictions] == list(logits.argmax(axis=1))
    for p, row in zip(predictions, probs, strict=True):
        assert p.label == "abc"[p.index]
        assert p.score == pytest.approx(row.max(), rel=1e-4)
        assert sum(p.scores.values()) == pytest.approx(1.0, rel=1e-5)


def test_image_predict_resizes_and_converts_colour(image_pack, image_classifier):
    """An 8x8 RGB image whose 2x2 blocks are constant resizes to the 4x4 grey block values."""
    grey = np.random.default_rng(4).integers(0, 256, size=(4, 4)).astype(np.float32)
    rgb = np.repeat(np.repeat(grey, 2, axis=0), 2, axis=1)[:, :, None].repeat(3, axis=2)
    single = ep.load(image_pack, threads=1).predict(rgb)
    x = ((grey / 255 - 0.5) / 0.25).astype(np.float32)[None, None]
    assert single.index == int(image_classifier[1](x).argmax())


def test_image_predict_rejects_bad_images(image_pack):
    model = ep.load(image_pack, threads=1)
    with pytest.raises(ep.PreprocessingError, match="HxW or HxWxC"):
        model.predict(np.zeros((2, 4, 4, 3)))
    with pytest.raises(ep.InputError, match="empty list"):
        model.predict([])


def test_predict_without_preprocessing_says_to_use_run(onnx_pack):
    with pytest.raises(ep.InputError, match="no preprocessing section; use run"):
        ep.load(onnx_pack, threads=1).predict(X[0])


def test_text_pack_predicts_from_strings(tmp_path):
    from tests.conftest import text_classifier_onnx

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film", "##s", "!"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n")
    text_classifier_onnx(tmp_path / "text.onnx", vocab_size=len(tokens))
    dest = packs.text_pack(
        tmp_path / "text.edgepack", tmp_path / "text.onnx", vocab, max_length=8, padding="longest"
    )
    model = ep.load(dest, threads=1)
    texts = ["Good films!", "BAD film", "unknown words here and there and more"]
    predictions = model.predict(texts)
    ids = [[2, 4, 6, 7, 8, 3], [2, 5, 6, 3], [2, 1, 1, 1, 1, 1, 1, 3]]  # truncated to 8
    for text, p, row in zip(texts, predictions, ids, strict=True):
        padded = np.array([row + [0] * (8 - len(row))])
        mask = (padded != 0).astype(np.int64)
        direct = model.run(
            {"input_ids": padded, "attention_mask": mask, "token_type_ids": np.zeros_like(padded)}
        )["logits"][0]
        assert p.index == int(direct.argmax()), text
        assert p.score == pytest.approx(float(np.exp(direct).max() / np.exp(direct).sum()), 1e-5)
