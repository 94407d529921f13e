"""Distillation on tiny models built here: options, students, losses, the loop, vocabulary
trimming, a run killed with SIGKILL and resumed, and a 2-process torchrun (gloo) run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.runtime import InputError
from tests.conftest import require, save_tiny_bert

torch = require("torch")
transformers = require("transformers")
require("torch_pruning")

from edgepack.compress.data import ArrayDataset, TextDataset  # noqa: E402
from edgepack.compress.distill import (  # noqa: E402
    BEST,
    CHECKPOINT,
    RESULT,
    STUDENT,
    TEACHER_LOGITS,
    DistillOptions,
    distill,
    hidden_loss,
    length_buckets,
    minilm_attention_loss,
    soft_loss,
    tinybert_attention_loss,
    weights_sha256,
)
from edgepack.compress.evaluate import classification_metrics  # noqa: E402
from edgepack.compress.students import bert_student, narrow_cnn  # noqa: E402

WORDS = ["good", "bad", "film", "plot", "a", "the", "is", "fun"]
FILES = {CHECKPOINT, BEST, TEACHER_LOGITS, STUDENT, RESULT}


def sentences(count: int, seed: int = 0) -> tuple[tuple[str, ...], np.ndarray]:
    """Texts of 1-8 words; label 1 when 'good' occurs more often than 'bad'."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        words = list(rng.choice(WORDS, size=int(rng.integers(1, 9))))
        texts.append(" ".join(words))
        labels.append(int(words.count("good") > words.count("bad")))
    return tuple(texts), np.asarray(labels, np.int64)


def write_tsv(path: Path, texts, labels) -> Path:
    rows = "".join(f"{t}\t{y}\n" for t, y in zip(texts, labels, strict=True))
    path.write_text("sentence\tlabel\n" + rows)
    return path


def bert_teacher(folder: Path, layers: int = 2, dropout: float = 0.1) -> Path:
    """save_tiny_bert's folder, with `layers` layers and the given dropout, and a classifier
    scaled up so that its outputs are confident: soft targets worth learning. Its vocabulary
    is laid out as BERT's: [PAD] first, then unused pieces, then [UNK] [CLS] [SEP] [MASK]."""
    save_tiny_bert(folder)
    pieces = (folder / "vocab.txt").read_text().split()
    special = ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    unused = [f"[unused{i}]" for i in range(6)]
    words = [p for p in pieces if p not in ["[PAD]", *special]]
    words = ["films", "##s", *words]  # "plots" splits into plot ##s, "films" does not
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", *unused, *special, *words][:100]))
    (folder / "tokenizer.json").unlink()
    transformers.BertTokenizerFast(str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig.from_pretrained(folder)
    config.num_hidden_layers = layers
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    torch.manual_seed(1)
    model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return bert_teacher(tmp_path_factory.mktemp("teacher") / "bert")


@pytest.fixture(scope="module")
def texts() -> TextDataset:
    words, labels = sentences(48)
    return TextDataset(words, labels)


def quick(**changes) -> DistillOptions:
    values = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "layers": (0,)}
    return DistillOptions(**(values | changes))


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": 0}, "temperature must be > 0"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
        ({"layers": (2, 0)}, "increasing"),
        ({"layers": (0, -1)}, "layer indices >= 0"),
        ({"channels_keep": 0.0}, r"channels_keep 0.0 must be in \(0, 1\]"),
        ({"channels_keep": 0.5, "layers": (0,)}, "give one kind"),
        ({"attention": "minilm"}, "give both"),
        ({"attention": "tinyburt", "attention_weight": 1.0}, "expected"),
        ({"layers": (0, 1), "layer_map": (1,)}, "layer_map has 1 entries"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"metric": "agreement"}, "metric 'agreement'"),
        ({"temperature": "2"}, "temperature must be float, got '2'"),
        ({"trim_vocab": 1}, "trim_vocab must be bool, got 1"),
        ({"epochs": True}, "epochs must be int, got True"),
    ],
)
def test_bad_options_are_rejected_at_construction(changes, message):
    with pytest.raises(InputError, match=message):
        DistillOptions(**changes)


def test_options_round_trip_and_name_the_closest_key():
    options = DistillOptions(layers=(0, 2, 4), attention="minilm", attention_weight=0.5)
    data = options.to_dict()
    assert data["layers"] == [0, 2, 4]  # lists, as in a TOML recipe
    assert DistillOptions.from_dict(json.loads(json.dumps(data))) == options
    with pytest.raises(InputError, match="did you mean 'temperature'"):
        DistillOptions.from_dict({"temprature": 2.0})
    assert DistillOptions().to_dict() == {}  # a recipe table holds what differs from defaults
    assert DistillOptions().record()["temperature"] == 2.0  # the result holds every field


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layers": (0, 5)}, r"layer indices in 0\.\.1"),
        ({"layer_map": (3,)}, "names teacher layer 3"),
        ({"intermediate_size": 128}, "larger than the teacher's 64"),
        ({"channels_keep": 0.5, "layers": None}, "channels_keep narrows a CNN"),
    ],
)
def test_options_that_do_not_fit_the_teacher_fail_before_training(
    tmp_path, teacher, texts, changes, message
):
    with pytest.raises(InputError, match=message):
        distill(teacher, None, texts, None, quick(**changes), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


def test_a_student_with_other_classes_or_heads_is_rejected(tmp_path, teacher, texts):
    config = transformers.BertConfig.from_pretrained(teacher)
    config.num_labels = 3
    other = transformers.BertForSequenceClassification(config)
    options = quick(layers=None)
    with pytest.raises(InputError, match=r"outputs have shape \(2, 3\).*teacher's \(2, 2\)"):
        distill(teacher, other, texts, None, options, tmp_path / "w", progress=False)
    config = transformers.BertConfig.from_pretrained(teacher)
    config.num_attention_heads = 4
    other = transformers.BertForSequenceClassification(config)
    options = quick(layers=None, attention="tinybert", attention_weight=1.0)
    with pytest.raises(InputError, match="teacher has 2 heads, the student 4"):
        distill(teacher, other, texts, None, options, tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists()


# --- students -------------------------------------------------------------------------------


def test_bert_student_keeps_the_chosen_layers_and_ffn_neurons(tmp_path):
    folder = bert_teacher(tmp_path / "t4", layers=4)
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    student = bert_student(teacher, layers=[0, 2], intermediate_size=16, ffn_init="magnitude")
    assert student.config.num_hidden_layers == 2 and student.config.intermediate_size == 16
    t_layer, s_layer = teacher.bert.encoder.layer[2], student.bert.encoder.layer[1]
    assert torch.equal(s_layer.attention.self.query.weight, t_layer.attention.self.query.weight)
    w_in, w_out = t_layer.intermediate.dense.weight, t_layer.output.dense.weight
    best = (w_in.norm(dim=1) * w_out.norm(dim=0)).topk(16).indices.sort().values
    assert torch.equal(s_layer.intermediate.dense.weight, w_in[best])
    assert torch.equal(s_layer.output.dense.weight, w_out[:, best])
    first = bert_student(teacher, layers=[0, 2], intermediate_size=16, ffn_init="first")
    assert torch.equal(first.bert.encoder.layer[1].intermediate.dense.weight, w_in[:16])
    # Keeping every layer and neuron gives the teacher back, output for output.
    whole = bert_student(teacher)
    ids = torch.tensor([[2, 5, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(whole(input_ids=ids).logits, teacher(input_ids=ids).logits)


def digits_teacher():
    from edgepack.compress.demo import split_digits, train

    train_x, train_y, test_x, test_y = split_digits()
    train_x, train_y, test_x, test_y = train_x[:600], train_y[:600], test_x[:300], test_y[:300]
    model = train(train_x, train_y, epochs=4)
    return (
        model,
        ArrayDataset({"pixels": train_x}, train_y),
        ArrayDataset({"pixels": test_x}, test_y),
    )


def test_narrow_cnn_prunes_channels_through_the_dependency_graph():
    from edgepack.compress.demo import digits_cnn

    teacher = digits_cnn()
    student = narrow_cnn(teacher, 0.5, torch.zeros(1, 1, 8, 8))
    assert [student[0].out_channels, student[2].out_channels, student[6].out_features] == [
        16,
        32,
        64,
    ]
    assert student[8].out_features == 10  # the classifier keeps its classes
    assert teacher[0].out_channels == 32  # the teacher is untouched
    assert student(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(InputError, match=r"keep 1.5 must be in \(0, 1\]"):
        narrow_cnn(teacher, 1.5, torch.zeros(1, 1, 8, 8))


def test_cnn_student_distilled_on_digits_gets_close_to_its_teacher(tmp_path):
    teacher, train, test = digits_teacher()
    options = DistillOptions(
        channels_keep=0.5, epochs=3, batch_size=64, learning_rate=3e-3, temperature=4.0
    )
    result = distill(teacher, None, train, test, options, tmp_path / "w", progress=False)
    assert result.parameters["student"] < 0.3 * result.parameters["teacher"]
    assert result.teacher_eval["accuracy"] > 90
    assert result.eval["accuracy"] > result.teacher_eval["accuracy"] - 5
    assert Path(result.output).name == "student.pt"
    assert result.lineage["student"] == {"kind": "narrow_cnn", "channels_keep": 0.5}
    saved = torch.load(result.output, weights_only=False)
    with torch.no_grad():
        x = torch.from_numpy(test.inputs["pixels"][:8])
        assert torch.allclose(saved(x), result.student(x))


# --- losses ---------------------------------------------------------------------------------


def test_soft_loss_is_zero_on_the_teacher_and_scaled_by_t_squared():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    assert soft_loss(logits, logits, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    other = torch.tensor([[0.0, 1.0, 0.0]])
    p_t = torch.softmax(logits / 2.0, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(other / 2.0, -1))).sum()
    assert soft_loss(other, logits, 2.0).item() == pytest.approx(4.0 * kl.item(), rel=1e-5)


def test_intermediate_losses_ignore_padding_and_vanish_on_identical_inputs():
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    a, b = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    b_padded = b.clone()
    b_padded[mask == 0] = 100.0  # whatever sits in padded positions does not count
    pairs = [(0, 0)]
    same = hidden_loss([a], [b], pairs, mask, torch.nn.Identity())
    assert torch.allclose(same, hidden_loss([a], [b_padded], pairs, mask, torch.nn.Identity()))
    assert hidden_loss([a], [a], pairs, mask, torch.nn.Identity()).abs().max() < 1e-7
    scores = torch.randn(2, 2, 4, 4)
    assert tinybert_attention_loss([scores], [scores], mask).abs().max() < 1e-7
    q, k, v = (torch.randn(2, 2, 4, 4) for _ in range(3))
    assert minilm_attention_loss((q, k, v), (q, k, v), mask).abs().max() < 1e-6
    assert (minilm_attention_loss((q, k, v), (k, q, v * 2), mask) > 0).all()


# --- the loop -------------------------------------------------------------------------------


def test_batches_are_length_bucketed_and_depend_on_seed_and_epoch_only():
    lengths = torch.tensor(np.random.default_rng(0).integers(1, 60, size=1000))
    batches = length_buckets(lengths, 10, seed=0, epoch=0)
    assert sorted(torch.cat(batches).tolist()) == list(range(1000))
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    assert padded < 0.6 * 1000 * int(lengths.max())  # vs every batch padded to the longest
    again = length_buckets(lengths, 10, seed=0, epoch=0)
    assert all(torch.equal(x, y) for x, y in zip(batches, again, strict=True))
    other = length_buckets(lengths, 10, seed=0, epoch=1)
    assert not all(torch.equal(x, y) for x, y in zip(batches, other, strict=True))


def test_bert_student_learns_from_cached_teacher_logits(tmp_path, teacher, texts):
    model = transformers.AutoModelForSequenceClassification.from_pretrained(teacher)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    tokenizer = transformers.AutoTokenizer.from_pretrained(teacher)
    options = quick(epochs=4, alpha=1.0, learning_rate=3e-3)
    result = distill(model, None, texts, texts, options, tmp_path / "w", tokenizer=tokenizer)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    assert last < 0.3 * first
    assert result.steps == 4 * 6 and result.epochs == 4 and not result.stopped_early
    # The teacher runs as often for 4 epochs as for 1: never during the steps.
    during_four = len(calls)
    calls.clear()
    distill(model, None, texts, texts, quick(epochs=1), tmp_path / "w1", tokenizer=tokenizer)
    assert len(calls) == during_four
    assert {p.name for p in (tmp_path / "w").iterdir()} == FILES
    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(result.output)
    assert reloaded.config.num_hidden_layers == 1
    assert json.loads((tmp_path / "w" / RESULT).read_text())["steps"] == 24
    assert (Path(result.output) / "vocab.txt").is_file()
    assert result.lineage["teacher_sha256"] == weights_sha256(model)
    assert result.lineage["student"] == {"kind": "teacher_layers", "layers": [0]}


@pytest.mark.parametrize(
    ("attention", "width"), [("tinybert", 32), ("minilm", 32), ("minilm", 16), ("none", 16)]
)
def test_intermediate_losses_train_with_a_projection_when_widths_differ(
    tmp_path, teacher, texts, attention, width
):
    config = transformers.BertConfig.from_pretrained(teacher)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = width, 32, 1
    torch.manual_seed(0)
    student = transformers.BertForSequenceClassification(config)
    weights = {"attention": attention, "attention_weight": 0.0 if attention == "none" else 1.0}
    options = quick(layers=None, hidden_weight=1.0, **weights)
    result = distill(teacher, student, texts, None, options, tmp_path / "w", progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert not (tmp_path / "w" / TEACHER_LOGITS).exists()  # the teacher runs on every batch
    state = torch.load(tmp_path / "w" / CHECKPOINT, weights_only=False)["model"]
    assert ("projection.weight" in state) == (width != 32)


def test_early_stopping_returns_the_best_student(tmp_path, teacher, texts):
    options = quick(epochs=5, learning_rate=1e-9, warmup=0.0, patience=2)
    result = distill(teacher, None, texts, texts, options, tmp_path / "w", progress=False)
    assert result.stopped_early and result.epochs == 3  # no better than epoch 1 twice: stop
    assert result.eval == result.history[0]["eval"]


def test_a_workdir_of_another_run_is_not_resumed(tmp_path, teacher, texts):
    distill(teacher, None, texts, None, quick(epochs=1), tmp_path / "w", progress=False)
    with pytest.raises(InputError, match="holds a checkpoint of a different run"):
        distill(teacher, None, texts, None, quick(epochs=1, seed=1), tmp_path / "w")


# --- vocabulary trimming --------------------------------------------------------------------


def test_trimmed_vocabulary_gives_the_same_ids_and_ships_in_the_pack(tmp_path, teacher, texts):
    require("onnxruntime")
    require("optimum")
    from edgepack.compress.export_onnx import export_hf
    from edgepack.packing import assemble_pack
    from edgepack.runtime import load

    train = TextDataset((*texts.texts, "good plots"), np.append(texts.labels, 1))
    words, labels = sentences(40, seed=3)
    dev = TextDataset(tuple(t.replace("film", "films") for t in words), labels)
    options = quick(trim_vocab=True)
    result = distill(teacher, None, train, dev, options, tmp_path / "w", progress=False)
    old = transformers.AutoTokenizer.from_pretrained(teacher)
    new = transformers.AutoTokenizer.from_pretrained(result.output)
    assert "films" not in new.get_vocab()  # not in the training data: "film" + "##s" now
    assert new.tokenize("films") == ["film", "##s"]
    # The eval metric is the student's with the tokenizer it ships with.
    student = transformers.AutoModelForSequenceClassification.from_pretrained(result.output)
    with torch.no_grad():
        feeds = new(list(dev.texts), padding=True, return_tensors="pt")
        shipped = student(**feeds).logits.argmax(-1).numpy()
    assert result.eval == classification_metrics(dev.labels, shipped)
    texts = train
    vocab = (Path(result.output) / "vocab.txt").read_text().split()
    used = {i for row in old(list(texts.texts))["input_ids"] for i in row}
    assert len(vocab) == len(used | set(old.all_special_ids)) == result.vocab["student"] < 100
    remap = {old.convert_tokens_to_ids(piece): i for i, piece in enumerate(vocab)}
    for text in texts.texts:
        assert new(text)["input_ids"] == [remap[i] for i in old(text)["input_ids"]]
    assert student.get_input_embeddings().num_embeddings == len(vocab)

    exported = export_hf(result.output, tmp_path / "onnx")
    names = {f.name for f in exported.files}
    assert "vocab.txt" in names
    preprocessing = {
        "kind": "text",
        "tokenizer": "wordpiece",
        "vocab_file": "vocab.txt",
        "lowercase": True,
        "max_length": 64,
        "padding": "longest",
        "truncation": True,
        "input_names": {r: r for r in ("input_ids", "attention_mask", "token_type_ids")},
    }
    pack = tmp_path / "student.edgepack"
    assemble_pack(
        pack,
        [exported.path],
        task="text-classification",
        assets={"vocab.txt": (tmp_path / "onnx" / "vocab.txt", "vocab")},
        preprocessing=preprocessing,
        postprocessing={"output_name": "logits", "softmax": True, "labels": ["neg", "pos"]},
    )
    model = load(pack, backend="onnxruntime", threads=1)
    sample = list(texts.texts[:6])
    with torch.no_grad():
        expected = torch.softmax(
            student(**new(sample, padding=True, return_tensors="pt")).logits, -1
        )
    got = np.array([[p.scores["neg"], p.scores["pos"]] for p in model.predict(sample)])
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


# --- interruption and distribution (subprocesses) -------------------------------------------


def command(teacher: Path, train: Path, workdir: Path, *sets: str) -> list[str]:
    argv = ["-m", "edgepack.compress.distill", "--teacher", str(teacher), "--train", str(train)]
    argv += ["--eval", str(train), "--workdir", str(workdir), "--quiet", "--threads", "1"]
    for item in sets:
        argv += ["--set", item]
    return argv


def final_weights(workdir: Path) -> dict[str, torch.Tensor]:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(workdir / STUDENT)
    return model.state_dict()


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    print(f"largest weight difference: {worst:.2e}")
    assert worst <= atol, f"weights differ by up to {worst:.2e}"


def test_killed_mid_epoch_and_rerun_it_resumes_and_ends_as_an_uninterrupted_run(tmp_path, teacher):
    train = write_tsv(tmp_path / "train.tsv", *sentences(64, seed=1))
    sets = ["layers=[0]", "epochs=3", "batch_size=2", "checkpoint_every=3", "learning_rate=1e-3"]
    killed = tmp_path / "killed"
    argv = [sys.executable, *command(teacher, train, killed, *sets)]
    child = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in child.stderr:
        if "checkpoint at step 6 " in line:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert not (killed / RESULT).exists()
    state = torch.load(killed / CHECKPOINT, weights_only=False)
    assert state["epoch"] == 0 and 0 < state["batch"] < 32  # mid-epoch

    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming at step {state['step']} " in rerun.stderr
    resumed = json.loads((killed / RESULT).read_text())
    assert resumed["resumed_from_step"] == state["step"] and resumed["steps"] == 96
    assert not list(killed.glob(".*"))  # no temp file left from the kill

    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, *command(teacher, train, whole, *sets)], check=True, capture_output=True
    )
    uninterrupted = json.loads((whole / RESULT).read_text())
    assert uninterrupted["resumed_from_step"] is None
    assert resumed["final_loss"] == pytest.approx(uninterrupted["final_loss"], rel=1e-4)
    assert resumed["eval"] == uninterrupted["eval"]
    assert_same_weights(final_weights(killed), final_weights(whole), atol=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_torchrun_match_one_with_the_same_global_batch(tmp_path):
    teacher = bert_teacher(tmp_path / "teacher", dropout=0.0)  # dropout masks differ per rank
    train = write_tsv(tmp_path / "train.tsv", *sentences(40, seed=2))
    sets = ["layers=[0]", "epochs=3", "batch_size=8", "learning_rate=3e-3", "alpha=1.0"]
    sets.append("checkpoint_every=2")
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    launcher += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    two = tmp_path / "two"
    run = subprocess.run(
        [*launcher, *command(teacher, train, two, *sets)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    one = tmp_path / "one"
    subprocess.run(
        [sys.executable, *command(teacher, train, one, *sets)], check=True, capture_output=True
    )
    multi, single = (json.loads((d / RESULT).read_text()) for d in (two, one))
    assert multi["world_size"] == 2 and single["world_size"] == 1
    assert multi["history"][-1]["loss"] < 0.8 * multi["history"][0]["loss"]
    assert {p.name for p in two.iterdir()} == {p.name for p in one.iterdir()} == FILES
    assert run.stderr.count("checkpoint at step 2 ") == 1  # rank 0 alone writes and says so
    losses = [h["loss"] for h in multi["history"]]
    assert losses == pytest.approx([h["loss"] for h in single["history"]], rel=1e-4)
    assert multi["eval"] == single["eval"]
    assert_same_weights(final_weights(two), final_weights(one), atol=1e-4)


def test_cli_names_a_misspelt_option_and_exits_2(tmp_path, capsys):
    from edgepack.compress.distill import main

    argv = ["--teacher", str(tmp_path), "--train", "x.tsv", "--workdir", str(tmp_path / "w")]
    assert main([*argv, "--set", "temprature=3"]) == 2
    assert "unknown key 'temprature'; did you mean 'temperature'?" in capsys.readouterr().err
    assert main([*argv, "--set", "layers"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
