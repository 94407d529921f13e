"""Issue 15 items 1 and 4: the pixel range a pack takes is recorded and checked, `info` and
`run --help` say what --image takes, and one set of pack options serves pack, quantize and
compress, including `pack PACK ... -o NEW` on an existing pack."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.cli.main import build_parser, main
from edgepack.runtime.errors import PixelRangeWarning, PreprocessingError

IMAGE = ["--image-size", "4", "4", "--color", "grayscale"]


def _pack(tmp_path, model, *flags: str, name: str = "img.edgepack"):
    out = tmp_path / name
    assert main(["pack", str(model), "-o", str(out), *flags]) == 0
    return out


def _npy(tmp_path, name: str, array: np.ndarray):
    path = tmp_path / name
    np.save(path, array)
    return str(path)


def test_an_8bit_pack_warns_on_a_float_image_in_0_16_and_refuses_one_past_255(
    tmp_path, image_classifier, capsys
):
    pack = _pack(tmp_path, image_classifier[0], *IMAGE, "--labels", "a,b,c")
    assert ep.read_manifest(pack).preprocessing["pixel_range"] == [0, 255]  # the default scale's
    digits_like = np.random.default_rng(0).uniform(0, 16, (4, 4)).astype(np.float32)
    capsys.readouterr()
    assert main(["run", str(pack), "--image", _npy(tmp_path, "d.npy", digits_like)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgepack run: warning: image pixel values span")
    assert "a small part of the range the model was trained on" in err[0]
    assert "0..255" in err[0]
    camera = (digits_like * 16).astype(np.uint8)  # a real 8-bit image: no warning
    assert main(["run", str(pack), "--image", _npy(tmp_path, "c.npy", camera)]) == 0
    assert capsys.readouterr().err == ""
    too_bright = np.full((4, 4), 300.0, np.float32)
    assert main(["run", str(pack), "--image", _npy(tmp_path, "b.npy", too_bright)]) == 1
    err = capsys.readouterr().err
    assert "outside the range the model was trained on" in err and "--pixel-range" in err


def test_a_pack_trained_on_0_16_takes_those_and_refuses_8bit_images(tmp_path, image_classifier):
    pack = _pack(tmp_path, image_classifier[0], *IMAGE, "--pixel-range", "0", "16", "--scale", "1")
    model = ep.load(pack, threads=1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model.predict(np.full((4, 4), 8.0, np.float32))
    assert not [w for w in seen if w.category is PixelRangeWarning]  # 0..16 in 0..16: fine
    with pytest.warns(PixelRangeWarning, match=r"span 0\.\.1 \(float32\)"):
        model.predict(np.eye(4, dtype=np.float32))  # 0..1 for a 0..16 pack: another unit
    with pytest.raises(PreprocessingError, match=r"span 0\.\.255 \(uint8\), outside"):
        model.predict(np.arange(16, dtype=np.uint8).reshape(4, 4) * 17)


def test_a_pixel_range_other_than_8bit_needs_a_scale(tmp_path, image_classifier, capsys):
    out = tmp_path / "x.edgepack"
    argv = ["pack", str(image_classifier[0]), "-o", str(out), *IMAGE, "--pixel-range", "0", "16"]
    assert main(argv) == 1
    assert "without --scale" in capsys.readouterr().err
    assert not out.exists()


def test_info_and_run_help_say_what_image_takes(tmp_path, image_classifier, capsys):
    pack = _pack(tmp_path, image_classifier[0], *IMAGE, "--scale", str(16 / 255))
    capsys.readouterr()
    assert main(["info", str(pack)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "--image takes" in x)
    for words in ("PNG, JPEG", ".npy", "HxW or HxWxC", "uint8 or float", "0..255", "0..16",
                  "grayscale", "4x4", "NCHW float32"):  # fmt: skip
        assert words in line, (words, line)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for words in ("PNG, JPEG", ".npy array", "HxW or HxWxC", "uint8 or float", "edgepack info"):
        assert words in shown, words


def test_pack_changes_an_existing_packs_labels_and_keeps_its_models(tmp_path, image_classifier):
    source = _pack(tmp_path, image_classifier[0], *IMAGE)
    before = ep.read_manifest(source)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    new = tmp_path / "labelled.edgepack"
    argv = ["pack", str(source), "--labels", str(labels), "--softmax", "--scale", "0.5"]
    assert main([*argv, "-o", str(new)]) == 0
    after = ep.verify_pack(new)  # every hash and the integrity field, as on the device
    assert after.postprocessing == {"output_name": "logits", "softmax": True,
                                    "labels": ["cat", "dog", "bird"]}  # fmt: skip
    assert after.preprocessing["scale"] == 0.5 and after.preprocessing["size"] == [4, 4]
    assert after.preprocessing["pixel_range"] == [0, 255]
    assert [m.sha256 for m in after.models] == [m.sha256 for m in before.models]
    assert after.name == "labelled" and after.integrity != before.integrity
    changed = ["name", "preprocessing", "postprocessing"]
    assert after.provenance["stages"][-1] == {
        "name": "repack",
        "from": str(source),
        "changed": changed,
    }
    assert ep.read_manifest(source).postprocessing is None  # the source is left as it was
    prediction = ep.load(new, threads=1).predict(np.zeros((4, 4), np.uint8))
    assert prediction.label in ("cat", "dog", "bird") and 0 < prediction.score <= 1


def test_pack_changes_a_pack_in_place(tmp_path, image_classifier):
    pack = _pack(tmp_path, image_classifier[0], *IMAGE, "--labels", "a,b,c")
    assert main(["pack", str(pack), "--no-softmax", "--labels", "x,y,z", "-o", str(pack)]) == 0
    post = ep.verify_pack(pack).postprocessing
    assert post["labels"] == ["x", "y", "z"] and post["softmax"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.edgepack"]  # no stray files


def test_a_refused_change_leaves_nothing_written(tmp_path, image_classifier, capsys):
    source = _pack(tmp_path, image_classifier[0], *IMAGE)
    new = tmp_path / "new.edgepack"
    cases = [
        (["--output-name", "nosuch"], "postprocessing.output_name names 'nosuch'"),
        (["--vocab", str(tmp_path / "nosuch.txt")], "nosuch.txt"),
        (["--max-length", "64"], "text preprocessing needs --vocab"),  # an image pack
        (["--rename", "x=y"], "--rename: describe model files"),
        ([], "nothing was asked to change"),
    ]
    for flags, message in cases:
        code = main(["pack", str(source), *flags, "-o", str(new)])
        err = capsys.readouterr().err
        assert code == 1 and message in err, (flags, err)
        assert not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.edgepack"]


def test_a_signed_packs_change_says_to_sign_again(tmp_path, image_classifier, capsys):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pack = _pack(tmp_path, image_classifier[0], *IMAGE)
    assert main(["sign", str(pack), "--key", str(key)]) == 0
    new = tmp_path / "new.edgepack"
    assert main(["pack", str(pack), "--labels", "a,b,c", "-o", str(new)]) == 0
    assert "sign" in capsys.readouterr().out.splitlines()[-1]
    with zipfile.ZipFile(new) as archive:
        assert "manifest.sig" not in archive.namelist()


def test_quantize_takes_the_same_pack_options(tmp_path, image_classifier, capsys):
    pytest.importorskip("onnx")
    model, reference = image_classifier
    x = np.random.default_rng(2).normal(size=(64, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, labels=reference(x).argmax(1))
    out = tmp_path / "int8.edgepack"
    data = ["--calib", str(tmp_path / "d.npz"), "--eval", str(tmp_path / "d.npz")]
    argv = ["quantize", str(model), "-o", str(out), "--method", "dynamic", *data]
    argv += ["--budget", "50", "--min-speedup", "0", "--quiet", "--labels", "a,b,c", "--softmax"]
    assert main([*argv, *IMAGE, "--pixel-range", "0", "16", "--scale", "0.0625"]) == 0
    manifest = ep.verify_pack(out)
    assert manifest.task == "image-classification"
    assert manifest.preprocessing["pixel_range"] == [0, 16]
    assert manifest.postprocessing["labels"] == ["a", "b", "c"]
    assert manifest.metrics["quantize"]["method"] == "dynamic"  # the quantize run's figures kept
    assert manifest.provenance["recipe"]["output"] == str(out)  # not the scratch folder's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "int8.edgepack"]
    bad = tmp_path / "bad.edgepack"
    capsys.readouterr()
    assert main(["quantize", str(model), "-o", str(bad), "--method", "dynamic", *data,
                 "--budget", "50", "--min-speedup", "0", "--quiet",
                 "--output-name", "nosuch"]) == 1  # fmt: skip
    assert "nosuch" in capsys.readouterr().err and not bad.exists()


def test_compress_takes_the_same_pack_options(tmp_path, image_classifier):
    pytest.importorskip("onnx")
    model, reference = image_classifier
    x = np.random.default_rng(3).normal(size=(64, 1, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, labels=reference(x).argmax(1))
    (tmp_path / "recipe.toml").write_text(
        f'name = "r"\noutput = "r.edgepack"\nsource = {json.dumps(str(model))}\n'
        '[data]\ncalibration = "d.npz"\nevaluation = "d.npz"\n'
        '[[stages]]\ntype = "quantize"\nmethod = "dynamic"\nbudget = 50\nmin_speedup = 0\n'
    )
    assert main(["compress", str(tmp_path / "recipe.toml"), "--quiet", "--labels", "a,b,c"]) == 0
    manifest = ep.verify_pack(tmp_path / "r.edgepack")
    assert manifest.postprocessing == {"output_name": "logits", "softmax": False,
                                       "labels": ["a", "b", "c"]}  # fmt: skip
