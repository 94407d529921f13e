"""Writes packs: describes model files, builds and validates the manifest, writes atomically.

Needs only numpy and onnxruntime (plus LiteRT for .tflite files), so `edgepack pack` works on a
device-side install; compress/ writes its packs through it too.

>>> from edgepack.packing import assemble_pack  # doctest: +SKIP
>>> assemble_pack("digits.edgepack", ["digits.onnx"], task="image-classification")  # doctest: +SKIP
"""

from .assemble import assemble_pack
from .model_info import describe_model_file, tflite_schema_version
from .sign import sign_pack
from .staging import scratch_dir
from .write import manifest_dict, manifest_json, sha256_file, unpack_pack, write_pack

__all__ = [
    "assemble_pack",
    "describe_model_file",
    "manifest_dict",
    "manifest_json",
    "scratch_dir",
    "sha256_file",
    "sign_pack",
    "tflite_schema_version",
    "unpack_pack",
    "write_pack",
]
