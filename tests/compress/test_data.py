"""Loading data: text tables, .npz, image folders, sklearn datasets, and matching model inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.compress.data import (
    ArrayDataset,
    TextDataset,
    load_dataset,
    load_image_folder,
    load_npz,
    load_sklearn,
    load_text,
    match_inputs,
)
from edgepack.runtime import InputError, TensorSpec


def test_csv_with_integer_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('text,label\n"good, really",1\nbad,0\n')
    data = load_dataset(path)
    assert isinstance(data, TextDataset)
    assert data.texts == ("good, really", "bad")
    assert data.labels.tolist() == [1, 0]


def test_tsv_keeps_bare_quotes_and_finds_sentence_column(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text('sentence\tlabel\nit \'s a "great" film\t1\nmeh\t0\n')
    data = load_text(path)
    assert data.texts[0] == 'it \'s a "great" film'


def test_jsonl_with_class_names_maps_to_given_order(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"review": "fine", "target": "pos"}, {"review": "awful", "target": "neg"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = load_text(path, text_column="review", classes=["neg", "pos"])
    assert data.labels.tolist() == [1, 0]
    assert data.classes == ("neg", "pos")


def test_text_without_label_column_is_unlabelled(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("text\nhello\n")
    assert load_text(path).labels is None


@pytest.mark.parametrize(
    ("content", "classes", "message"),
    [
        ("text,label\n", None, "no data rows"),
        ("body,label\nx,1\n", None, "no text column"),
        ("text,label\nx,3\n", 2, "outside the 2 classes"),
        ("text,label\nx,maybe\n", ["neg", "pos"], "not among the classes"),
    ],
)
def test_bad_text_files_say_what_is_wrong(tmp_path, content, classes, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_text(path, classes=classes)


def test_npz_inputs_and_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, pixels=np.zeros((3, 4), np.float32), y=np.array([0, 1, 2]))
    data = load_npz(path, classes=3)
    assert list(data.inputs) == ["pixels"]
    assert data.labels.tolist() == [0, 1, 2]
    with pytest.raises(InputError, match="outside the 2 classes"):
        load_npz(path, classes=2)


def test_npz_with_only_labels_is_rejected(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, labels=np.array([0, 1]))
    with pytest.raises(InputError, match="only labels"):
        load_dataset(path)


def _write_images(root, classes, per_class=2):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
        (root / name / "notes.txt").write_text("not an image")


def test_image_folder_is_nchw_float32_with_folder_labels(tmp_path):
    _write_images(tmp_path, ["cat", "dog"])
    data = load_dataset(tmp_path, size=(8, 8))
    assert data.inputs["pixel_values"].shape == (4, 3, 8, 8)
    assert data.inputs["pixel_values"].dtype == np.float32
    assert data.labels.tolist() == [0, 0, 1, 1]
    assert data.classes == ("cat", "dog")


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(InputError, match="no images found"):
        load_image_folder(tmp_path / "empty")
    _write_images(tmp_path / "zoo", ["cat", "owl"], per_class=1)
    with pytest.raises(InputError, match=r"\['owl'\].*not among the classes"):
        load_image_folder(tmp_path / "zoo", classes=["cat", "dog"])


def test_sklearn_digits_by_name():
    data = load_dataset("sklearn:digits", sample_shape=(1, 8, 8))
    assert data.inputs["input"].shape == (1797, 1, 8, 8)
    assert data.inputs["input"].dtype == np.float32
    assert len(data.classes) == 10
    with pytest.raises(InputError, match="unknown scikit-learn dataset"):
        load_sklearn("mnist")


def test_unknown_kind_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot tell what kind"):
        load_dataset(tmp_path / "data.parquet")
    with pytest.raises(InputError, match="does not exist"):
        load_dataset(tmp_path / "missing.csv")


def test_dataset_invariants():
    with pytest.raises(InputError, match="empty"):
        ArrayDataset({"x": np.zeros((0, 3), np.float32)})
    with pytest.raises(InputError, match="disagree on the number of samples"):
        ArrayDataset({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})
    with pytest.raises(InputError, match="outside the 2 classes"):
        ArrayDataset({"x": np.zeros((2, 3))}, np.array([0, 5]), ("a", "b"))
    data = ArrayDataset({"x": np.arange(10).reshape(5, 2)}, np.arange(5))
    assert [len(b["x"]) for b in data.batches(2)] == [2, 2, 1]
    assert data.subset([4, 0]).labels.tolist() == [4, 0]


SPECS = [TensorSpec("pixels", "float32", ["batch", 1, 8, 8])]


def test_match_inputs_renames_a_single_input_and_drops_extras():
    data = ArrayDataset({"input": np.zeros((2, 1, 8, 8), np.float32)})
    assert list(match_inputs(data, SPECS).inputs) == ["pixels"]
    specs = [TensorSpec("input_ids", "int64", ["b", "s"])]
    both = ArrayDataset(
        {"input_ids": np.zeros((2, 4), np.int64), "token_type_ids": np.zeros((2, 4), np.int64)}
    )
    assert list(match_inputs(both, specs).inputs) == ["input_ids"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 1, 8, 8), np.float64), "dtype float64; the model expects float32"),
        (np.zeros((2, 8, 8), np.float32), r"rank 3\); the model expects rank 4"),
        (np.zeros((2, 1, 9, 9), np.float32), "axis 2 must be 8"),
    ],
)
def test_match_inputs_rejects_wrong_dtype_and_shape(array, message):
    with pytest.raises(InputError, match=message):
        match_inputs(ArrayDataset({"pixels": array}), SPECS, "calibration data")


def test_match_inputs_names_missing_inputs():
    specs = [TensorSpec("input_ids", "int64", ["b", "s"]), TensorSpec("mask", "int64", ["b", "s"])]
    with pytest.raises(InputError, match=r"no array for model input\(s\) \['mask'\]"):
        match_inputs(ArrayDataset({"input_ids": np.zeros((1, 2), np.int64)}), specs)


def test_text_dataset_tokenizes_to_int64(tmp_path):
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(str(tmp_path / "vocab.txt"))
    data = TextDataset(("good film", "bad"), np.array([1, 0])).tokenize(tokenizer)
    assert data.inputs["input_ids"].dtype == np.int64
    assert data.inputs["input_ids"].shape == (2, 4)  # [CLS] good film [SEP], padded to longest
    assert data.labels.tolist() == [1, 0]
