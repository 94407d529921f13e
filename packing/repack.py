"""Rewrites an existing pack with new labels, softmax or preprocessing, keeping its models.

`edgepack pack PACK ... -o NEW` and the pack options of `quantize` and `compress` come here: the
source is verified file by file as it is read, the new manifest is checked against the models
it describes, re-hashed and written atomically (a failure leaves `dest` as it was).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.runtime.errors import ManifestError
from edgepack.runtime.manifest import FileEntry, PackManifest
from edgepack.runtime.pack import SIGNATURE_NAME, PackReader

from .write import write_pack

PathLike = str | os.PathLike[str]
KEEP: Any = object()  # a section left as the source pack has it


@dataclass
class PackChanges:
    """What changes; KEEP (the default) leaves a field as it is, None removes a section.

    assets: pack path -> (file or bytes, role), added or replacing the file of that path."""

    name: Any = KEEP
    task: Any = KEEP
    preprocessing: Any = KEEP
    postprocessing: Any = KEEP
    provenance: Any = KEEP  # the whole provenance, before the repack stage is added to it
    assets: dict[str, tuple[PathLike | bytes, str]] = field(default_factory=dict)
    origin: str | None = None  # what provenance names as the source (default: its path)

    def changed(self) -> list[str]:
        """The names of the fields this changes, for the pack's provenance."""
        names = [n for n in ("name", "task", "preprocessing", "postprocessing")]
        return [n for n in names if getattr(self, n) is not KEEP] + sorted(self.assets)


def repack(source: PathLike, dest: PathLike, changes: PackChanges) -> PackManifest:
    """Write `dest` with the models and files of the pack `source`, changed as `changes` says.

    Every file of the source is read through the runtime's checked reader (size and sha256);
    the new manifest must name only inputs and outputs its models have; `dest` may be `source`.
    A signature does not carry over (the manifest changed): sign the new pack again.

    >>> repack("digits.edgepack", "digits-labelled.edgepack",
    ...        PackChanges(postprocessing={"output_name": "logits", "softmax": True,
    ...                                    "labels": list("0123456789")}))  # doctest: +SKIP
    """
    with PackReader(source) as reader:
        manifest = copy.deepcopy(reader.manifest)
        sources: dict[str, PathLike | bytes] = {
            path: reader.read(path) for path in reader.entries if path not in changes.assets
        }
    for key in ("name", "task", "preprocessing", "postprocessing", "provenance"):
        value = getattr(changes, key)
        if value is not KEEP:
            setattr(manifest, key, value)
    known = {f.path for f in manifest.files}
    for relpath, (data, role) in changes.assets.items():
        sources[relpath] = data
        if relpath in known:
            next(f for f in manifest.files if f.path == relpath).role = role
        else:
            manifest.files.append(FileEntry(relpath, role))
    _check_names(manifest)
    stages = manifest.provenance.setdefault("stages", [])
    stages.append(
        {"name": "repack", "from": changes.origin or str(source), "changed": changes.changed()}
    )
    return write_pack(dest, manifest, sources)


def was_signed(pack: PathLike) -> bool:
    """Whether a pack carries a signature (which a repack cannot keep)."""
    path = Path(pack)
    if path.is_dir():
        return (path / SIGNATURE_NAME).is_file()
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return SIGNATURE_NAME in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False  # not readable as an archive: the reader says why


def _check_names(manifest: PackManifest) -> None:
    """What pre- and postprocessing name must be an input or output of every model, as the
    runtime checks at load: refused here, before anything is written."""
    pre, post = manifest.preprocessing or {}, manifest.postprocessing or {}
    wanted = [
        ("preprocessing.input_names", n, "inputs") for n in pre.get("input_names", {}).values()
    ]
    wanted += [("preprocessing.input_name", pre.get("input_name"), "inputs")]
    wanted += [("postprocessing.output_name", post.get("output_name"), "outputs")]
    for model in manifest.models:
        for where, name, kind in wanted:
            have = [t.name for t in getattr(model, kind)]
            if name is not None and name not in have:
                raise ManifestError(
                    f"{where} names {name!r}, but {model.path} has {kind} {have}: name one of them"
                )
