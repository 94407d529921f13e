"""Reading packs: hashes checked, missing files named, unsafe archives and links refused."""

from __future__ import annotations

import stat
import zipfile

import pytest

import edgepack.runtime as ep
from edgepack.packing import assemble_pack, unpack_pack


def test_changed_file_is_named_in_the_error(tmp_path, classifier):
    assemble_pack(tmp_path / "p", [classifier[0]])
    with open(tmp_path / "p" / "classifier.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ep.IntegrityError, match="classifier.onnx .*does not match"):
        ep.verify_pack(tmp_path / "p")
    with pytest.raises(ep.IntegrityError, match="classifier.onnx"):
        ep.load(tmp_path / "p")


def test_missing_file_is_named(tmp_path, classifier):
    assemble_pack(tmp_path / "p", [classifier[0]])
    (tmp_path / "p" / "classifier.onnx").unlink()
    with pytest.raises(ep.IntegrityError, match="classifier.onnx is missing"):
        ep.verify_pack(tmp_path / "p")


def test_missing_manifest_and_missing_pack(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ep.IntegrityError, match="manifest.json is missing"):
        ep.load(tmp_path / "empty")
    with pytest.raises(ep.ManifestError, match="no pack at"):
        ep.load(tmp_path / "nowhere")
    (tmp_path / "junk.edgepack").write_bytes(b"not a zip")
    with pytest.raises(ep.ManifestError, match="not a zip"):
        ep.load(tmp_path / "junk.edgepack")


def _zip_with(path, name, data=b"x", mode=stat.S_IFREG | 0o644):
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = mode << 16
        archive.writestr(info, data)


@pytest.mark.parametrize(
    ("name", "mode", "problem"),
    [
        ("/etc/evil", stat.S_IFREG | 0o644, "absolute path"),
        ("../evil", stat.S_IFREG | 0o644, r"outside the pack"),
        ("a/../../evil", stat.S_IFREG | 0o644, r"outside the pack"),
        ("link", stat.S_IFLNK | 0o777, "symbolic link"),
        ("fifo", stat.S_IFIFO | 0o644, "not a regular file"),
    ],
)
def test_unsafe_archive_entries_are_refused_before_writing(tmp_path, name, mode, problem):
    archive = tmp_path / "bad.edgepack"
    _zip_with(archive, name, mode=mode)
    with pytest.raises(ep.UnsafeArchiveError, match=problem):
        unpack_pack(archive, tmp_path / "out")
    with pytest.raises(ep.UnsafeArchiveError):
        ep.load(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.edgepack"]


def test_symlink_in_pack_directory_is_refused(tmp_path, classifier):
    assemble_pack(tmp_path / "p", [classifier[0]])
    target = tmp_path / "p" / "classifier.onnx"
    real = tmp_path / "real.onnx"
    target.rename(real)
    target.symlink_to(real)
    with pytest.raises(ep.UnsafeArchiveError, match="symbolic link"):
        ep.verify_pack(tmp_path / "p")
