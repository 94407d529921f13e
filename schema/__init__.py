"""The pack schema (pack_schema.json, the one definition of the pack format) and its validator.

A small interpreter of the JSON Schema keywords the pack schema uses, so that the device needs
no jsonschema package: a library of its own, which imports nothing of edgepack (import-linter
checks it). Tests hold it to the jsonschema library on valid and broken manifests.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

# In the order _describe names a value: integer before number, which an int also is.
_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "array": (list,),
    "object": (dict,),
}


@cache
def pack_schema() -> dict[str, Any]:
    """The pack manifest JSON Schema shipped with the runtime."""
    # Beside this module in every install; importlib.resources would cost the device's import.
    return json.loads(Path(__file__).with_name("pack_schema.json").read_text("utf-8"))


def schema_errors(instance: Any, *, allow_unknown_keys: bool = False) -> list[str]:
    """Every place where `instance` breaks the pack schema, as 'path: problem' lines."""
    schema = pack_schema()
    return _errors(instance, schema, schema, "manifest", allow_unknown_keys)


def format_schema_errors(source: str, errors: list[str]) -> str:
    """One message for schema errors: the first 20 'path: problem' lines and how many more."""
    more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
    return f"{source} does not match the pack schema:\n  " + "\n  ".join(errors[:20]) + more


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def _errors(value: Any, node: dict, root: dict, path: str, lenient: bool) -> list[str]:
    if "$ref" in node:
        node = root["$defs"][node["$ref"].removeprefix("#/$defs/")]
        return _errors(value, node, root, path, lenient)
    if "oneOf" in node:
        branches = [_errors(value, branch, root, path, lenient) for branch in node["oneOf"]]
        if branches.count([]) == 1:
            return []
        # None fits: report the branch with the fewest errors, the form most likely meant.
        # A branch that refuses the value as a whole (its type) is the form least likely meant.
        whole = [all(e.startswith(f"{path}:") for e in b) for b in branches]
        best = min(range(len(branches)), key=lambda i: (whole[i], len(branches[i])))
        return [f"{path}: matches several forms"] if [] in branches else branches[best]
    errors: list[str] = []
    expected = node.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {_describe(value)}"]
    if "const" in node and value != node["const"]:
        errors.append(f"{path}: expected {node['const']!r}, got {value!r}")
    if "enum" in node and value not in node["enum"]:
        allowed = ", ".join(repr(v) for v in node["enum"])
        errors.append(f"{path}: expected one of {allowed}, got {value!r}")
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            errors.append(f"{path}: must not be empty")
        if "pattern" in node and not re.search(node["pattern"], value):
            errors.append(f"{path}: {value!r} does not match the pattern {node['pattern']}")
    for word, (sign, broken) in _BOUNDS.items():
        if _is_type(value, "number") and word in node and broken(value, node[word]):
            errors.append(f"{path}: must be {sign} {node[word]}, got {value}")
    if isinstance(value, list):
        if len(value) < node.get("minItems", 0):
            errors.append(f"{path}: needs at least {node['minItems']} item(s), got {len(value)}")
        if "maxItems" in node and len(value) > node["maxItems"]:
            errors.append(f"{path}: takes at most {node['maxItems']} item(s), got {len(value)}")
        for i, item in enumerate(value if "items" in node else []):
            errors += _errors(item, node["items"], root, f"{path}[{i}]", lenient)
    if isinstance(value, dict):
        errors += [
            f"{path}: missing required field {k!r}"
            for k in node.get("required", [])
            if k not in value
        ]
        properties = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += _errors(item, properties[key], root, f"{path}.{key}", lenient)
            elif extra is False and not lenient:
                errors.append(
                    f"{path}: unknown field {key!r} (known: {', '.join(sorted(properties))})"
                )
            elif isinstance(extra, dict):
                errors += _errors(item, extra, root, f"{path}.{key}", lenient)
    return errors


_BOUNDS = {
    "minimum": (">=", lambda v, b: v < b),
    "maximum": ("<=", lambda v, b: v > b),
    "exclusiveMinimum": (">", lambda v, b: v <= b),
}


def _describe(value: Any) -> str:
    for name in _TYPES:
        if _is_type(value, name):
            return name if name in ("array", "object") else f"{name} {value!r}"
    return type(value).__name__
