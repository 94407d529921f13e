"""Stage options as data: the base of every recipe stage's frozen options dataclass.

A stage's options are checked when they are built (field types from the annotations, then the
subclass's `validate()`), read from a recipe table with the closest valid key suggested for a
typo, and written back to one. compress/recipe.py, prune.py and distill.py build on it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edgepack.runtime import InputError


def unknown_key_error(where: str, key: str, valid: Sequence[str]) -> InputError:
    """'unknown option 'methd'; did you mean 'method'?' plus what is valid, as an InputError."""
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return InputError(f"{where}: unknown key {key!r}{hint} (valid: {', '.join(sorted(valid))})")


class StageOptions:
    """Base of every stage's options: built from a recipe table, written back to one.

    Subclasses are frozen dataclasses. Building one checks each field against its annotation
    (int, float, str, bool, None, tuple: lists from TOML become tuples), then calls the
    subclass's `validate()` for the rest (ranges, choices), so an options object that exists is
    a valid one and every failure is an InputError naming the field.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            kinds = [k.strip() for k in str(f.type).split("|")]
            if isinstance(value, list) and any(k.startswith("tuple") for k in kinds):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if not any(_is_kind(value, k) for k in kinds):
                raise InputError(f"{f.name} must be {' or '.join(kinds)}, got {value!r}")
        self.validate()

    def validate(self) -> None:
        """Checks beyond the field types; subclasses override it."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stage") -> StageOptions:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for key in data:
            if key not in names:
                raise unknown_key_error(where, key, names)
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        except TypeError as exc:  # pragma: no cover - every field has a default
            raise InputError(f"{where}: {exc}") from None

    def check_for(self, profile: Any) -> None:
        """Validate what depends on the recipe's target profile (a DeviceProfile); most stages
        depend on none."""

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from their defaults (TOML has no null), lists for tuples."""
        data = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if value != default:
                data[f.name] = plain_value(value)
        return data


_KINDS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "None": lambda v: v is None,
}


def _is_kind(value: Any, kind: str) -> bool:
    """Whether value fits one annotation term; containers are checked by validate()."""
    check = _KINDS.get(kind)
    if check is not None:
        return check(value)
    if kind.startswith("tuple"):
        return isinstance(value, tuple)
    return True  # Mapping[...] and other terms: the subclass checks them


def plain_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [plain_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain_value(v) for k, v in value.items()}
    return value


def as_tuple(options: Any, name: str, item: type | tuple[type, ...]) -> None:
    value = getattr(options, name)
    if value is None:
        return
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InputError(f"{name} must be a list, got {value!r}")
    if not all(isinstance(v, item) for v in value):
        raise InputError(f"{name} has an item of the wrong kind: {value!r}")
    object.__setattr__(options, name, tuple(value))
