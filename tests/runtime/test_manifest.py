"""The manifest contract: schema validation, version rules, and agreement with jsonschema."""

from __future__ import annotations

import copy
import json

import pytest

from edgepack.packing import manifest_dict, manifest_json
from edgepack.runtime import (
    SCHEMA_VERSION,
    ManifestError,
    SchemaVersionError,
    manifest_digest,
    parse_manifest,
)
from edgepack.schema import pack_schema, schema_errors
from tests.conftest import require

SHA = "0" * 64


def valid_manifest() -> dict:
    tensor = {"name": "x", "dtype": "float32", "shape": ["batch", 4]}
    return {
        "schema_version": "1.0",
        "name": "tiny",
        "edgepack_version": "0.1.0",
        "task": "text-classification",
        "created": "2026-11-28T00:00:00+00:00",
        "models": [
            {
                "path": "model.onnx",
                "format": "onnx",
                "precision": "int8-dynamic",
                "size_bytes": 10,
                "sha256": SHA,
                "opset": 17,
                "backends": ["onnxruntime"],
                "inputs": [tensor],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
                "checks": [{"reference": "torch", "samples": 8, "max_abs_diff": 0.01}],
                "cost": {
                    "parameters": 10,
                    "flops": 100.0,
                    "shape_assumptions": {"batch": 1},
                    "ops": [
                        {
                            "op_class": "gemm",
                            "precision": "int8",
                            "count": 1,
                            "flops": 100,
                            "bytes": 40,
                        }
                    ],
                },
            }
        ],
        "files": [{"path": "vocab.txt", "size_bytes": 3, "sha256": SHA, "role": "vocab"}],
        "preprocessing": {
            "kind": "text",
            "tokenizer": "wordpiece",
            "vocab_file": "vocab.txt",
            "lowercase": True,
            "strip_accents": None,
            "max_length": 16,
            "padding": "max_length",
            "truncation": True,
            "input_names": {"input_ids": "input_ids"},
        },
        "postprocessing": {"output_name": "logits", "softmax": True, "labels": ["neg", "pos"]},
        "provenance": {
            "source_model": "m",
            "recipe": None,
            "stages": [{"name": "quantize"}],
            "calibration_fingerprint": None,
        },
        "metrics": {"quantize": {"accuracy": 0.9}},
        "requirements": {"min_runtime_version": "0.1.0", "cpu_features": ["avx512_vnni"]},
    }


def broken_manifests() -> list[tuple[str, dict]]:
    """(what is wrong, manifest) pairs, each breaking one rule of the schema."""
    cases = []

    def case(label, edit):
        data = valid_manifest()
        edit(data)
        cases.append((label, data))

    case("missing name", lambda d: d.pop("name"))
    case("bad task", lambda d: d.update(task="translation"))
    case("no models", lambda d: d.update(models=[]))
    case("bad sha", lambda d: d["models"][0].update(sha256="xyz"))
    case("negative size", lambda d: d["models"][0].update(size_bytes=-1))
    case("bool size", lambda d: d["models"][0].update(size_bytes=True))
    case("bad dtype", lambda d: d["models"][0]["inputs"][0].update(dtype="complex64"))
    case("absolute path", lambda d: d["models"][0].update(path="/etc/passwd"))
    case("dotdot path", lambda d: d["files"][0].update(path="../vocab.txt"))
    case("unknown field", lambda d: d["models"][0].update(colour="red"))
    case("bad backend", lambda d: d["models"][0].update(backends=["tensorflow"]))
    case("bad padding", lambda d: d["preprocessing"].update(padding="left"))
    case("short max_length", lambda d: d["preprocessing"].update(max_length=1))
    case(
        "image size rank",
        lambda d: d.update(
            preprocessing={
                "kind": "image",
                "input_name": "x",
                "size": [8],
                "layout": "NCHW",
                "color": "rgb",
                "scale": 1.0,
                "mean": [0.0],
                "std": [1.0],
            }
        ),
    )
    case(
        "quantization without scale",
        lambda d: d["models"][0]["inputs"][0].update(quantization={"zero_point": 0}),
    )
    return cases


def test_valid_manifest_parses():
    manifest = parse_manifest(json.dumps(valid_manifest()))
    assert manifest.models[0].precision == "int8-dynamic"
    assert manifest.models[0].inputs[0].shape == ["batch", 4]
    assert manifest.preprocessing["vocab_file"] == "vocab.txt"


def _contains(whole, part) -> bool:
    """True when every value in `part` is in `whole` (extra keys in `whole` hold defaults)."""
    if isinstance(part, dict):
        return all(k in whole and _contains(whole[k], v) for k, v in part.items())
    if isinstance(part, list):
        return len(whole) == len(part) and all(map(_contains, whole, part))
    return whole == part


def test_round_trip_is_lossless():
    original = valid_manifest()
    manifest = parse_manifest(json.dumps(original))
    assert _contains(manifest_dict(manifest), original)
    assert parse_manifest(manifest_json(manifest)) == manifest


@pytest.mark.parametrize(("label", "data"), broken_manifests(), ids=lambda v: str(v)[:30])
def test_every_broken_manifest_is_rejected(label, data):
    with pytest.raises(ManifestError, match="does not match the pack schema"):
        parse_manifest(json.dumps(data), "m.json")


def test_error_names_the_field():
    data = valid_manifest()
    data["models"][0]["inputs"][0]["dtype"] = "complex64"
    with pytest.raises(ManifestError, match=r"models\[0\]\.inputs\[0\]\.dtype"):
        parse_manifest(json.dumps(data))


def test_unknown_major_version_says_what_it_read_and_supports():
    data = valid_manifest() | {"schema_version": "2.0"}
    with pytest.raises(SchemaVersionError, match=r"schema version 2\.0.*reads schema 1\.x"):
        parse_manifest(json.dumps(data))


def test_newer_minor_version_with_new_fields_is_read():
    data = valid_manifest() | {"schema_version": "1.7", "signatures": {"future": True}}
    data["integrity"] = manifest_digest(data)  # required from schema 1.1 on
    assert parse_manifest(json.dumps(data)).name == "tiny"


def test_same_minor_version_rejects_unknown_fields():
    data = valid_manifest() | {"signatures": {}}
    with pytest.raises(ManifestError, match="unknown field 'signatures'"):
        parse_manifest(json.dumps(data))


@pytest.mark.parametrize("text", ["{", "[]", '{"schema_version": 1}'])
def test_malformed_json_is_rejected(text):
    with pytest.raises(ManifestError):
        parse_manifest(text)


def test_builtin_validator_agrees_with_jsonschema():
    jsonschema = require("jsonschema")
    validator = jsonschema.Draft202012Validator(pack_schema())
    assert not list(validator.iter_errors(valid_manifest()))
    assert not schema_errors(valid_manifest())
    for label, data in broken_manifests():
        assert list(validator.iter_errors(data)), f"jsonschema accepted: {label}"
        assert schema_errors(data), f"edgepack accepted: {label}"


def test_writer_output_is_valid_for_jsonschema(tmp_path, classifier):
    jsonschema = require("jsonschema")
    from edgepack.packing import assemble_pack

    manifest = assemble_pack(tmp_path / "p", [classifier[0]], task="other")
    data = json.loads((tmp_path / "p" / "manifest.json").read_text())
    jsonschema.validate(data, pack_schema())
    assert data == manifest_dict(manifest)
    assert copy.deepcopy(data)["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"max_length": 1}, "max_length: must be >= 2"),
        ({"padding": "left"}, "padding: expected one of 'max_length', 'longest', got 'left'"),
        ({"lowercase": "yes"}, "lowercase: expected boolean, got string 'yes'"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"input_names": {"attention_mask": "mask"}}, "missing required field 'input_ids'"),
        ({"input_names": {"input_ids": "x", "position_ids": "p"}}, "unknown field 'position_ids'"),
        ({"input_names": {"input_ids": ""}}, "input_names.input_ids: must not be empty"),
        ({"tokenizer": "bpe"}, "tokenizer: expected one of 'wordpiece', got 'bpe'"),
    ],
)
def test_bad_text_preprocessing_is_named(overrides, match):
    data = valid_manifest()
    data["preprocessing"] |= overrides
    errors = schema_errors(data)
    assert any(match in error for error in errors), errors
