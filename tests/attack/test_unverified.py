"""No byte reaches the interpreter unverified: external data, linked folders, a pack updated
while it loads, a manifest changed where no file hash looks, and signed packs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import edgepack.runtime as ep
from edgepack.runtime.pack import PackReader, _read_lease
from tests.conftest import require

from . import attacks, craft


@pytest.mark.parametrize("case", range(len(attacks.EXTERNAL)), ids=attacks.EXTERNAL)
def test_external_data_outside_the_manifest_is_refused(bench, case):
    outcome, detail = attacks.external_data(bench, case)
    # onnxruntime >= 1.20 lets the backend name the external data; older ones (Python 3.10's
    # newest is 1.23 with numpy 1.x here) still refuse to read it, in their own words
    assert outcome == "clean", detail
    assert "external data" in detail or "cannot load" in detail, detail


@pytest.mark.parametrize("case", range(len(attacks.SYMLINKS)), ids=attacks.SYMLINKS)
def test_a_listed_path_through_a_linked_folder_is_refused(bench, case):
    outcome, detail = attacks.symlinked_folder(bench, case)
    assert outcome == "clean" and "outside the pack" in detail, detail


def test_a_pack_reached_through_a_link_still_loads(bench, tmp_path):
    (tmp_path / "current").symlink_to(bench.packs["image-dir"], target_is_directory=True)
    assert craft.same(craft.use_pack(tmp_path / "current"), bench.answers["image-dir"])


@pytest.mark.parametrize("mode", ["replace", "inplace"])
def test_no_load_runs_a_model_it_did_not_verify(bench, mode):
    outcomes = list(attacks.race(bench, 60, mode))
    wrong = [detail for kind, detail in outcomes if kind not in ("clean", "silent")]
    assert not wrong, wrong[:3]


def _leases_here(folder) -> bool:
    """Whether this file system grants the reader's lease (closing the file releases it)."""
    (folder / "probe").write_bytes(b"")
    with open(folder / "probe", "rb") as probe:
        return _read_lease(probe.fileno())


def test_a_writer_waits_for_onnxruntime_and_the_load_is_refused(bench):
    """Under the read lease, a writer's open waits until the interpreter has read the file;
    then the load is refused (what it read was still the hashed file)."""
    folder, pack = bench.copy("image-dir")
    if not _leases_here(folder):
        pytest.skip("this file system grants no leases: loads use the sealed copy")
    model = pack / "image.onnx"
    hashed = model.read_bytes()
    writer = None
    with (
        PackReader(pack) as reader,
        pytest.raises(ep.IntegrityError, match="opened for writing"),
        reader.verified("image.onnx", copied=True) as path,
    ):
        assert os.path.samefile(path, model)  # the file itself, no copy
        code = f"f = open({str(model)!r}, 'r+b'); f.write(b'x'); f.close()"
        writer = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(1.0)
        assert writer.poll() is None, "the writer's open did not wait for the lease"
        assert path.read_bytes() == hashed
    assert writer is not None and writer.wait(timeout=60) == 0  # released: the writer goes on
    assert model.read_bytes()[:1] == b"x"


def test_a_file_already_open_for_writing_gets_the_sealed_copy(bench):
    _, pack = bench.copy("image-dir")
    model = pack / "image.onnx"
    with (
        open(model, "r+b"),
        PackReader(pack) as reader,
        reader.verified("image.onnx", copied=True) as path,
    ):
        assert os.readlink(path).startswith("/memfd:")
        assert path.read_bytes() == model.read_bytes()


@pytest.mark.parametrize("case", range(3), ids=["label", "scale", "mean"])
def test_a_manifest_changed_where_no_file_hash_looks_is_refused(bench, case):
    outcome, detail = attacks.tampered_manifest(bench, case)
    assert outcome == "clean" and "manifest" in detail, detail


@pytest.mark.parametrize("case", range(len(attacks.SIGNATURES)), ids=attacks.SIGNATURES)
def test_signed_packs(bench, case):
    require("cryptography")
    outcome, detail = attacks.signature(bench, case)
    assert outcome == ("silent" if case == 4 else "clean"), detail


def test_sign_and_verify_from_the_cli(bench, tmp_path):
    require("cryptography")
    for name in ("image", "image-dir"):
        folder, pack = bench.copy(name)
        key, public = attacks.keypair(folder, "k")
        _, other = attacks.keypair(folder, "other")
        assert craft.run_cli(["verify", str(pack), "--trusted-key", str(public)])[0] == 1
        assert craft.run_cli(["sign", str(pack), "--key", str(key)])[0] == 0
        code, out, _ = craft.run_cli(["verify", str(pack), "--trusted-key", str(public)])
        assert code == 0 and "signed" in out
        assert craft.run_cli(["verify", str(pack), "--trusted-key", str(other)])[0] == 1
        assert craft.run_cli(["verify", str(pack)])[0] == 0  # no key given: hashes only
        model = ep.load(pack, threads=1, trusted_keys=[public])
        assert craft.same(model.run({"x": craft.PIXELS}), bench.answers[name][1])
