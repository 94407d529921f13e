"""The edgepack command: pack, info, verify and run, in-process and through the entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepack.cli.main import main


def test_pack_info_verify_run(tmp_path, capsys, image_classifier):
    labels = tmp_path / "labels.txt"
    labels.write_text("zero\none\ntwo\n")
    pack = tmp_path / "img.edgepack"
    assert (
        main(
            [
                "pack",
                str(image_classifier[0]),
                "-o",
                str(pack),
                "--labels",
                str(labels),
                "--softmax",
                "--image-size",
                "4",
                "4",
                "--color",
                "grayscale",
            ]
        )
        == 0
    )
    assert main(["info", str(pack)]) == 0
    assert "pack img (image-classification)" in capsys.readouterr().out
    assert main(["info", str(pack), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["postprocessing"]["labels"] == ["zero", "one", "two"]
    assert manifest["preprocessing"]["size"] == [4, 4]
    assert main(["verify", str(pack)]) == 0
    assert "OK" in capsys.readouterr().out

    image = np.random.default_rng(0).integers(0, 256, (4, 4)).astype(np.uint8)
    np.save(tmp_path / "digit.npy", image)
    assert (
        main(["run", str(pack), "--image", str(tmp_path / "digit.npy"), "--threads", "1", "--json"])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    x = ((image / 255).astype(np.float32))[None, None]
    assert result["model"]["threads"] == 1
    assert result["result"][0]["index"] == int(image_classifier[1](x).argmax())

    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(pack), "--npy", f"x={tmp_path / 'x.npy'}", "--json"]) == 0
    logits = json.loads(capsys.readouterr().out)["result"]["logits"]
    np.testing.assert_allclose(logits, image_classifier[1](x), rtol=1e-5)


def test_verify_fails_with_reason_on_a_damaged_pack(tmp_path, capsys, classifier):
    pack = tmp_path / "p"
    assert main(["pack", str(classifier[0]), "-o", str(pack)]) == 0
    (pack / "classifier.onnx").write_bytes(b"damaged")
    assert main(["verify", str(pack)]) == 1
    assert "classifier.onnx" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "{pack}", "--npy", "x"], "--npy takes NAME=FILE"),
        (["run", "{pack}", "--npy", "x=missing.npy"], "no file missing.npy"),
        (["run", "{pack}", "--text", "hi"], "no preprocessing section"),
        (["run", "{pack}", "--npy", "x=x.npy", "--backend", "litert"], "no model for backend"),
        (["pack", "{model}", "-o", "out", "--rename", "bad"], "--rename takes TENSOR=NAME"),
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path, capsys, classifier, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    pack = tmp_path / "p"
    assert main(["pack", str(classifier[0]), "-o", str(pack)]) == 0
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    filled = [a.format(pack=pack, model=classifier[0]) for a in argv]
    assert main(filled) == 1
    assert message in capsys.readouterr().err


def test_entry_point_runs_without_compress(tmp_path, classifier):
    edgepack = str(Path(sys.executable).parent / "edgepack")  # the script pip installed
    pack = tmp_path / "p.edgepack"
    subprocess.run([edgepack, "pack", str(classifier[0]), "-o", str(pack)], check=True)
    result = subprocess.run([edgepack, "verify", str(pack)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK:")
