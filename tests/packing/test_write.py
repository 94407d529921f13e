"""Writing packs: directory and archive, hashes, atomic writes, manifest and sources agreeing."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.packing import (
    assemble_pack,
    describe_model_file,
    sha256_file,
    unpack_pack,
    write_pack,
)
from tests.conftest import require


@pytest.fixture
def sources(tmp_path, classifier):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")
    return classifier[0], vocab


@pytest.mark.parametrize("dest_name", ["pack", "pack.edgepack"])
def test_written_pack_verifies_and_runs(tmp_path, sources, classifier, dest_name):
    model_path, vocab = sources
    dest = tmp_path / dest_name
    written = assemble_pack(dest, [model_path], assets={"extra/vocab.txt": (vocab, "asset")})
    assert ep.verify_pack(dest) == written
    assert written.models[0].sha256 == sha256_file(model_path)
    assert written.models[0].size_bytes == model_path.stat().st_size
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    out = ep.load(dest, threads=1).run({"x": x})["logits"]
    np.testing.assert_allclose(out, classifier[1](x), rtol=1e-5, atol=1e-5)


def test_archive_and_directory_hold_the_same_files(tmp_path, sources):
    model_path, vocab = sources
    assemble_pack(tmp_path / "a.edgepack", [model_path], assets={"vocab.txt": (vocab, "vocab")})
    manifest = unpack_pack(tmp_path / "a.edgepack", tmp_path / "unpacked")
    assert sorted(os.listdir(tmp_path / "unpacked")) == [
        "classifier.onnx",
        "manifest.json",
        "vocab.txt",
    ]
    assert ep.verify_pack(tmp_path / "unpacked") == manifest


def test_an_unpacked_signed_archive_is_still_signed(tmp_path, sources):
    require("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edgepack.packing.sign import sign_pack

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assemble_pack(tmp_path / "a.edgepack", [sources[0]])
    sign_pack(tmp_path / "a.edgepack", private)
    unpack_pack(tmp_path / "a.edgepack", tmp_path / "unpacked")
    assert "manifest.sig" in os.listdir(tmp_path / "unpacked")
    ep.verify_pack(tmp_path / "unpacked", trusted_keys=[public])


def test_invalid_manifest_writes_nothing(tmp_path, sources):
    entry = describe_model_file(sources[0])
    entry.precision = "int3"
    with pytest.raises(ep.ManifestError, match="precision"):
        assemble_pack(tmp_path / "p", [(sources[0], entry)])
    assert os.listdir(tmp_path) == ["vocab.txt"]


@pytest.mark.parametrize("dest_name", ["p", "p.edgepack"])
def test_disk_full_mid_write_keeps_the_old_pack_and_no_temp_files(
    tmp_path, sources, monkeypatch, dest_name
):
    dest = tmp_path / dest_name
    first = assemble_pack(dest, [sources[0]])
    before = sorted(p.name for p in tmp_path.iterdir())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # Fault injection: the second file's copy fails after the first one was written.
    monkeypatch.setattr("shutil.copyfile", disk_full)
    monkeypatch.setattr(zipfile.ZipFile, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        assemble_pack(dest, [sources[0]], assets={"vocab.txt": (sources[1], "vocab")})
    assert ep.verify_pack(dest) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sources_and_manifest_must_agree(tmp_path, sources):
    manifest = ep.PackManifest("p", "other", [describe_model_file(sources[0])])
    with pytest.raises(ep.ManifestError, match="listed without a source"):
        write_pack(tmp_path / "p", manifest, {})
    with pytest.raises(ep.ManifestError, match="given but not listed"):
        write_pack(tmp_path / "p", manifest, {"classifier.onnx": sources[0], "other.bin": b"x"})
