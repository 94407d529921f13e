"""Bundles: wheel tags and markers for the target, sums, the offline install, clear failures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edgepack.cli.main import main
from edgepack.deploy.bundle import build_bundle, device_extras, pack_facts, verify_bundle
from edgepack.deploy.errors import BundleError
from edgepack.deploy.target import Target, target_for_profile
from edgepack.deploy.wheelhouse import build_wheelhouse, find_python
from tests.deploy.conftest import make_pack, require_or_skip


def test_profile_targets_and_their_platform_tags():
    pi = target_for_profile("rpi4-1.5ghz")
    assert (pi.python, pi.machine, pi.glibc) == ("3.11", "aarch64", "2.36")
    tags = pi.platform_tags()
    # Every glibc minor from the board's down to 2.17: ai-edge-litert 2.3.0 is tagged 2_27 only.
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_27_aarch64" in tags
    assert tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert len(tags) == 36 - 17 + 2
    jetson = target_for_profile("jetson-orin-nano")
    assert (jetson.python, jetson.glibc, jetson.machine) == ("3.10", "2.35", "aarch64")
    assert target_for_profile("rpi5", python="3.13").abi == "cp313"
    with pytest.raises(BundleError, match="Python 3.10 or newer"):
        target_for_profile("jetson-nano")  # JetPack 4 ships Python 3.6
    with pytest.raises(BundleError, match="architecture 'mips'"):
        Target("3.11", "mips", "2.36")


def _wheel(folder, name, version="1.0", requires=()):
    """A real (tiny, pure) wheel with Requires-Dist lines, as a find-links source."""
    info = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        archive.writestr(
            f"{info}/METADATA", meta + "".join(f"Requires-Dist: {r}\n" for r in requires)
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def marker_index(tmp_path):
    """app needs a helper only below Python 3.11 (like tomli), one only on aarch64 and one
    only on x86_64: pip on this x86_64 host gets the last two the wrong way round."""
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "app", requires=(
        "common>=1",
        'oldpyhelper>=1; python_version < "3.11"',
        'armhelper; platform_machine == "aarch64"',
        'x86helper; platform_machine == "x86_64"',
    ))  # fmt: skip
    for name in ("common", "oldpyhelper", "armhelper", "x86helper"):
        _wheel(index, name)
    return index


@pytest.mark.parametrize("resolver", ["host pip", "target's pip"])
def test_markers_are_evaluated_for_the_target(tmp_path, marker_index, resolver):
    jetson = Target("3.10", "aarch64", "2.35")
    if resolver == "host pip":
        interpreter = sys.executable
    else:
        interpreter = find_python("3.10")
        require_or_skip(interpreter is not None, "no Python 3.10 here (pyenv) to resolve with")
    dest = tmp_path / "wheels"
    wheels = build_wheelhouse(
        ["app"], jetson, dest, pip_args=["--no-index", "--find-links", str(marker_index)],
        interpreter=interpreter,
    )  # fmt: skip
    assert {w.name for w in wheels} == {"app", "common", "oldpyhelper", "armhelper"}
    assert sorted(p.name.split("-")[0] for p in dest.iterdir()) == sorted(w.name for w in wheels)


def test_no_wheel_for_the_target_python_names_package_python_and_alternatives(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BundleError) as caught:
        build_wheelhouse(
            ["tflite-runtime>=2.14"], Target("3.13", "aarch64", "2.36"), tmp_path / "w",
            pip_args=["--no-index", "--find-links", str(empty)],
        )  # fmt: skip
    message = str(caught.value)
    assert "no wheel of tflite-runtime>=2.14 for Python 3.13, aarch64, glibc 2.36" in message
    assert "ai-edge-litert" in message and "--python X.Y" in message
    assert "\n" not in message


def test_failed_bundle_leaves_nothing_behind(tmp_path, edgepack_wheel):
    pack, _ = make_pack(tmp_path / "pack", seed=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out" / "bundle"
    with pytest.raises(BundleError, match="no wheel of numpy"):
        build_bundle(
            pack,
            out,
            edgepack_wheel=edgepack_wheel,
            pip_args=["--no-index", "--find-links", str(empty)],
        )
    assert list((tmp_path / "out").iterdir()) == []
    (tmp_path / "out" / "taken").mkdir()
    with pytest.raises(BundleError, match="already exists"):
        build_bundle(pack, tmp_path / "out" / "taken")


def test_bundle_layout_manifest_and_verify(host_bundles, device_python, tmp_path, capsys):
    bundle = host_bundles[0][0]
    assert (bundle.parent / f"{bundle.name}.tar").is_file()
    info = verify_bundle(bundle)
    names = {w["name"] for w in info["wheels"]}
    assert {"edgepack", "numpy", "onnxruntime"} <= names and "ai-edge-litert" not in names
    assert info["target"]["python"] == device_python and info["target"]["profile"] == "host"
    pinned = {w["name"]: w["version"] for w in info["wheels"]}
    assert pinned["onnxruntime"] == "1.32.0"  # from constraints.txt, as the bundle was asked
    assert (bundle / "requirements.txt").read_text().count("==") == len(info["wheels"])
    assert main(["bundle", "--verify", str(bundle)]) == 0
    assert "files match SHA256SUMS" in capsys.readouterr().out

    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    (pack,) = (damaged / "pack").iterdir()
    pack.write_bytes(pack.read_bytes()[:-1] + b"!")
    (damaged / "notes.txt").write_text("unlisted")
    with pytest.raises(BundleError, match=rf"changed: pack/{pack.name}; not listed: notes.txt"):
        verify_bundle(damaged)
    assert main(["bundle", "--verify", str(damaged)]) == 1
    assert "does not match its SHA256SUMS" in capsys.readouterr().err


def test_install_sh_refuses_a_damaged_bundle_before_installing(host_bundles, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(host_bundles[0][0], damaged)
    wheel = next((damaged / "wheels").glob("numpy-*.whl"))
    with wheel.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"tampered")
    done = subprocess.run(["sh", str(damaged / "install.sh")], capture_output=True, text=True)
    assert done.returncode == 1
    assert "edgepack-error: verify: files do not match SHA256SUMS" in done.stderr
    assert wheel.name in done.stderr
    assert not (damaged / "venv").exists()


def _offline_prefix() -> list[str]:
    """A command prefix that runs without any network (a new, empty network namespace)."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"]).returncode == 0:
            return prefix
    require_or_skip(False, "cannot make a network namespace here (unshare -n) for an offline test")
    return []


def test_install_sh_installs_offline_and_runs_the_pack(host_bundles, tmp_path):
    prefix = _offline_prefix()
    device = tmp_path / "device"
    shutil.copytree(host_bundles[0][0], device)
    done = subprocess.run(
        [*prefix, "sh", str(device / "install.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "edgepack-step: installed"
    probe = "import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)"
    assert subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True).returncode
    (pack, reference), _ = host_bundles[1]
    x = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run(
        [str(device / "venv/bin/edgepack"), "run", str(device / "pack" / pack.name),
         "--npy", f"x={tmp_path / 'x.npy'}", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    logits = np.asarray(json.loads(run.stdout)["result"]["logits"], dtype=np.float32)
    np.testing.assert_allclose(logits, reference(x), rtol=1e-5, atol=1e-5)


def test_the_device_gets_the_extras_its_pack_needs(tmp_path):
    pack, _ = make_pack(tmp_path, seed=0)
    facts = pack_facts(pack)
    assert (facts["formats"], facts["preprocessing"]) == (["onnx"], None)
    assert device_extras(facts) == []  # the base install runs it
    assert device_extras({"formats": ["onnx", "tflite"], "preprocessing": "text"}) == [
        "tflite",
        "text",
    ]
    assert device_extras({"formats": ["onnx"], "preprocessing": "image"}) == []
