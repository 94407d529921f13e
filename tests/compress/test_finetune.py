"""Fine-tuning a sequence classifier: a tiny random BERT on a 20-row TSV, in seconds."""

from __future__ import annotations

import json

import pytest

from edgepack.runtime import InputError
from tests.conftest import require, save_tiny_bert

POSITIVE = ["good film", "a good plot", "good good", "the film is good", "good fun"]
NEGATIVE = ["bad film", "a bad plot", "bad bad", "the plot is bad", "bad fun"]


def write_tsv(path, rows):
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return path


@pytest.fixture
def sst_like(tmp_path):
    """20 labelled rows: 'good' sentences are positive (1), 'bad' ones negative (0)."""
    rows = [(t, 1) for t in POSITIVE * 2] + [(t, 0) for t in NEGATIVE * 2]
    return write_tsv(tmp_path / "train.tsv", rows)


@pytest.fixture
def tiny_bert(tmp_path):
    return save_tiny_bert(tmp_path / "base")


def test_cli_fine_tunes_saves_and_reports_dev_accuracy(tmp_path, tiny_bert, sst_like, capsys):
    from edgepack.cli.main import main

    out = tmp_path / "teacher"
    argv = ["finetune", str(tiny_bert), "--train", str(sst_like), "-o", str(out)]
    argv += ["--eval", str(sst_like), "--labels", "negative", "positive", "--samples", "0"]
    argv += ["--epochs", "15", "--batch-size", "8", "--lr", "3e-3", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned on 20 samples, 45 steps" in printed
    assert "dev accuracy" in printed
    assert f"next: edgepack quantize {out} --task text-classification" in printed

    transformers = require("transformers")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert (out / "tokenizer.json").is_file() and (out / "vocab.txt").is_file()
    result = json.loads((out / "finetune.json").read_text())
    assert result["config"]["epochs"] == 15 and result["labels"] == ["negative", "positive"]
    # One word decides the class: a tiny BERT learns that from 20 rows.
    assert result["eval"]["accuracy"] >= 90.0
    assert result["eval"]["samples"] == 20

    # The README's text path: the fine-tuned folder quantizes into a pack that `run --text`
    # answers with the folder's id2label name and a softmax probability, not "1 (1.013)".
    pack = tmp_path / "sentiment.edgepack"
    argv = ["quantize", str(out), "--task", "text-classification", "--calib", str(sst_like)]
    argv += ["--eval", str(sst_like), "-o", str(pack), "--min-speedup", "0", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["run", str(pack), "--text", "a good film", "--text", "bad bad", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)["result"]
    assert [a["label"] for a in answers] == ["positive", "negative"]
    for answer in answers:
        assert 0.5 < answer["score"] <= 1.0 and sum(answer["scores"].values()) == pytest.approx(1.0)


def test_same_seed_same_model(tmp_path, tiny_bert, sst_like):
    from edgepack.compress.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(samples=12, epochs=2, batch_size=4, seed=3)
    first = finetune(tiny_bert, sst_like, tmp_path / "a", config, progress=False)
    second = finetune(tiny_bert, sst_like, tmp_path / "b", config, progress=False)
    assert first.train_samples == 12 and first.steps == 6
    assert first.final_loss == second.final_loss
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert first.labels == ["0", "1"]  # integer labels without names: named by index


def test_eval_subset_is_the_first_rows(tmp_path, tiny_bert, sst_like):
    from edgepack.compress.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(samples=4, batch_size=4)
    result = finetune(
        tiny_bert, sst_like, tmp_path / "t", config, eval_data=sst_like, eval_samples=5
    )
    assert result.eval["samples"] == 5


def test_missing_files_are_named(tmp_path, tiny_bert, sst_like, capsys):
    from edgepack.cli.main import main

    argv = ["--train", str(tmp_path / "none.tsv"), "-o", str(tmp_path / "o")]
    assert main(["finetune", str(tiny_bert), *argv]) == 1
    assert "training data" in capsys.readouterr().err
    argv = ["--train", str(sst_like), "-o", str(tmp_path / "o")]
    assert main(["finetune", str(tmp_path), *argv]) == 1
    assert "not a Hugging Face model folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rows", "config", "message"),
    [
        ([("good", "")], {}, "no label column"),
        ([("good film", 1)] * 3, {}, "single class"),
        ([("good film", 1), ("bad", 0)], {"batch_size": 0}, "batch_size must be a positive"),
    ],
)
def test_bad_input_is_rejected(tmp_path, tiny_bert, rows, config, message):
    from edgepack.compress.finetune import FinetuneConfig, finetune

    train = tmp_path / "train.tsv"
    if rows[0][1] == "":
        train.write_text("sentence\n" + "".join(f"{t}\n" for t, _ in rows))
    else:
        write_tsv(train, rows)
    with pytest.raises(InputError, match=message):
        finetune(tiny_bert, train, tmp_path / "out", FinetuneConfig(**config), progress=False)
