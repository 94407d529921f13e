"""Device profiles: what a board is (cores, clock, ISA, memory, power, OS) and how to run on it.

A profile is one TOML file; this module defines its schema, validates it and reads it.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from edgepack.device_profiles.errors import ProfileError

SCHEMA_VERSION = 1
BACKENDS = ("onnxruntime", "litert")
QUANTIZATIONS = ("int8-dynamic", "int8-static", "fp16", "fp32")
ISA_FEATURES = ("neon", "dotprod", "i8mm", "fp16", "avx2", "avx512", "vnni")
# "estimate": no published figure; the profile's [notes] give the reasoning (no source needed).
BANDWIDTH_KINDS = ("measured", "theoretical", "estimate")
MAX_REFERENCES = 2  # per backend: a calibration is one or two published measurements per runtime


@dataclass(frozen=True)
class Source:
    """A public document that backs a figure."""

    url: str
    title: str


@dataclass(frozen=True)
class Cpu:
    core: str
    cores: int
    max_clock_ghz: float | None
    arch: str
    simd_width_bits: int | None  # None only for a detected host of unknown architecture
    features: frozenset[str]
    # Speed-up of all `cores` threads over one, measured on the board (a published 1-thread /
    # all-core pair); the cost model's thread scaling for this board (docs/latency-model.md).
    all_core_speedup: float | None = None
    # Megacycles one core took for a compute-bound fp32 CNN in a published table that covers
    # several boards (the geometric mean over its models, times the clock it ran at). Boards of one
    # core type differ in it by what the cost model does not see (memory latency, the SoC), so a
    # calibration lent between them carries the ratio (benchmarks/calibrate.py).
    one_thread_cnn_mcycles: float | None = None


@dataclass(frozen=True)
class Memory:
    ram_gib: float | None
    bandwidth_gbs: float | None = None
    bandwidth_kind: str | None = None  # "measured", "theoretical" (bus spec) or "estimate"
    l2_kib: int | None = None  # per core, or shared by the cluster when l2_shared
    l2_shared: bool | None = None
    l3_kib: int | None = None  # shared by all cores; absent where the SoC has none


@dataclass(frozen=True)
class Accelerator:
    name: str
    fp16_tflops: float | None = None
    int8_tops: float | None = None  # dense; vendors often quote 2:4-sparse figures, twice as high


@dataclass(frozen=True)
class Power:
    idle_w: float | None = None
    load_w: float | None = None


@dataclass(frozen=True)
class OsImage:
    image: str
    python: str
    glibc: str | None = None
    machine: str | None = None  # as `uname -m` says it (aarch64): picks the wheels for a bundle


@dataclass(frozen=True)
class Defaults:
    """What `--profile` picks when the user does not say: backend, threads, quantization scheme."""

    backend: str
    threads: int
    quantization: str


@dataclass(frozen=True)
class ReferenceMeasurement:
    """A published latency on this device, to calibrate estimates (never a per-model fudge)."""

    model: str
    backend: str
    precision: str
    latency_ms: float
    source: Source
    threads: int | None = None  # None where the work runs on an accelerator
    note: str | None = None
    # The board's CPU clock and memory bandwidth when the figure was measured, where they differ
    # from the profile's (another power mode, or a release before a clock update): calibration
    # estimates the reference as the board then was.
    board_clock_ghz: float | None = None
    board_bandwidth_gbs: float | None = None


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    soc: str
    cpu: Cpu
    memory: Memory
    os: OsImage
    defaults: Defaults
    accelerator: Accelerator | None = None
    power: Power = field(default_factory=Power)
    references: tuple[ReferenceMeasurement, ...] = ()
    sources: Mapping[str, Source] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None  # the file it came from; None for the detected host
    detected: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (features sorted, path as a string)."""
        data = asdict(self)
        data["cpu"]["features"] = sorted(self.cpu.features)
        data["path"] = str(self.path) if self.path else None
        return data


# The file format (rpi5.toml is a complete example): top-level name/description/soc, tables [cpu],
# [memory], [accelerator], [power], [os], [defaults], up to two [[references]] per backend (each
# with its own url and title), [sources] mapping a dotted figure field to {url, title}, [notes] why
# a figure is left out. TOML has no null: an unknown figure is simply absent.
#
# The schema in one table: dotted field -> (kind, required). A table that is absent counts as
# empty, so its required fields are reported by name; [accelerator] is the one optional table.
_STR, _INT, _FLOAT, _STR_LIST = "a string", "an integer", "a number", "a list of strings"
_BOOL = "a boolean"
FIELDS: dict[str, tuple[str, bool]] = {
    "schema_version": (_INT, True),
    "name": (_STR, True),
    "description": (_STR, True),
    "soc": (_STR, True),
    "cpu.core": (_STR, True),
    "cpu.cores": (_INT, True),
    "cpu.max_clock_ghz": (_FLOAT, True),
    "cpu.arch": (_STR, True),
    "cpu.simd_width_bits": (_INT, True),
    "cpu.features": (_STR_LIST, True),
    "cpu.all_core_speedup": (_FLOAT, False),
    "cpu.one_thread_cnn_mcycles": (_FLOAT, False),
    "memory.ram_gib": (_FLOAT, True),
    "memory.bandwidth_gbs": (_FLOAT, True),
    "memory.bandwidth_kind": (_STR, True),
    "memory.l2_kib": (_INT, False),
    "memory.l2_shared": (_BOOL, False),
    "memory.l3_kib": (_INT, False),
    "accelerator.name": (_STR, True),
    "accelerator.fp16_tflops": (_FLOAT, False),
    "accelerator.int8_tops": (_FLOAT, False),
    "power.idle_w": (_FLOAT, False),
    "power.load_w": (_FLOAT, False),
    "os.image": (_STR, True),
    "os.python": (_STR, True),
    "os.glibc": (_STR, False),
    "os.machine": (_STR, False),
    "defaults.backend": (_STR, True),
    "defaults.threads": (_INT, True),
    "defaults.quantization": (_STR, True),
}
REFERENCE_FIELDS: dict[str, tuple[str, bool]] = {
    "model": (_STR, True),
    "backend": (_STR, True),
    "precision": (_STR, True),
    "latency_ms": (_FLOAT, True),
    "url": (_STR, True),
    "title": (_STR, True),
    "threads": (_INT, False),
    "note": (_STR, False),
    "board_clock_ghz": (_FLOAT, False),
    "board_bandwidth_gbs": (_FLOAT, False),
}
OPTIONAL_TABLES = ("accelerator",)
# Facts about the hardware or its image, each of which must cite a source in [sources]. The rest
# (name, description, defaults, bandwidth_kind) are edgepack's own choices or labels.
FIGURE_FIELDS = tuple(
    f
    for f in FIELDS
    if f
    not in ("schema_version", "name", "description", "memory.bandwidth_kind", "memory.l2_shared")
    and not f.startswith("defaults.")
)
_TABLES = tuple(sorted({f.split(".")[0] for f in FIELDS if "." in f}))


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _FLOAT:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _BOOL:
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    kind = names.get(type(value), f"a {type(value).__name__}")
    shown = repr(value)
    return f"{kind} ({shown[:40]}{'...' if len(shown) > 40 else ''})"


def _check_fields(
    table: Mapping[str, Any], spec: Mapping[str, tuple[str, bool]], where: str, file: Path
) -> dict[str, Any]:
    """Return {field: value} for a flat table, raising on unknown, missing or wrong-typed fields."""
    for key in table:
        if key not in spec:
            raise ProfileError(
                f"{file}: unknown field '{where}{key}' (known: {', '.join(sorted(spec))})"
            )
    values = {}
    for key, (kind, required) in spec.items():
        if key not in table:
            if required:
                raise ProfileError(f"{file}: missing required field '{where}{key}' ({kind})")
            continue
        if not _kind_ok(table[key], kind):
            raise ProfileError(
                f"{file}: field '{where}{key}' must be {kind}, got {_describe(table[key])}"
            )
        values[key] = float(table[key]) if kind == _FLOAT else table[key]
    return values


def _check_choice(value: str, allowed: tuple[str, ...], fieldname: str, file: Path) -> None:
    if value not in allowed:
        raise ProfileError(
            f"{file}: field '{fieldname}' is {value!r}; expected one of {', '.join(allowed)}"
        )


def _check_positive(values: Mapping[str, Any], file: Path) -> None:
    for name, value in values.items():
        if FIELDS.get(name, ("", False))[0] in (_INT, _FLOAT) and value <= 0:
            raise ProfileError(f"{file}: field '{name}' must be greater than 0, got {value}")


def _sources(raw: Any, file: Path) -> dict[str, Source]:
    if not isinstance(raw, dict):
        raise ProfileError(f"{file}: 'sources' must be a table of field = {{url, title}}")
    sources = {}
    for key, entry in raw.items():
        if key not in FIGURE_FIELDS:
            raise ProfileError(
                f"{file}: 'sources.{key}' does not name a figure field "
                f"(figure fields: {', '.join(FIGURE_FIELDS)})"
            )
        if not isinstance(entry, dict):
            raise ProfileError(f"{file}: field 'sources.{key}' must be a table {{url, title}}")
        spec = {"url": (_STR, True), "title": (_STR, True)}
        sources[key] = Source(**_check_fields(entry, spec, f"sources.{key}.", file))
    return sources


def _notes(raw: Any, file: Path) -> dict[str, str]:
    known = (*FIELDS, *_TABLES, "references")
    if not isinstance(raw, dict):
        raise ProfileError(f"{file}: 'notes' must be a table of field = \"text\"")
    for key, text in raw.items():
        if key not in known:
            raise ProfileError(f"{file}: 'notes.{key}' does not name a field of the profile")
        if not isinstance(text, str):
            got = _describe(text)
            raise ProfileError(f"{file}: field 'notes.{key}' must be a string, got {got}")
    return dict(raw)


def as_measured(
    profile: DeviceProfile, clock_ghz: float | None = None, bandwidth_gbs: float | None = None
) -> DeviceProfile:
    """The profile with the CPU clock and memory bandwidth a published figure ran at, where its
    source gives them and they differ from the profile's (a reference's board_clock_ghz and
    board_bandwidth_gbs); unchanged where both are None."""
    cpu, memory = profile.cpu, profile.memory
    if clock_ghz is not None:
        cpu = replace(cpu, max_clock_ghz=clock_ghz)
    if bandwidth_gbs is not None:
        memory = replace(memory, bandwidth_gbs=bandwidth_gbs)
    return replace(profile, cpu=cpu, memory=memory)


def _references(raw: Any, file: Path) -> tuple[ReferenceMeasurement, ...]:
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise ProfileError(f"{file}: 'references' must be an array of tables ([[references]])")
    refs = []
    for i, entry in enumerate(raw):
        values = _check_fields(entry, REFERENCE_FIELDS, f"references[{i}].", file)
        for name in ("latency_ms", "threads", "board_clock_ghz", "board_bandwidth_gbs"):
            if name in values and values[name] <= 0:
                raise ProfileError(f"{file}: field 'references[{i}].{name}' must be greater than 0")
        source = Source(values.pop("url"), values.pop("title"))
        refs.append(ReferenceMeasurement(source=source, **values))
    for backend in {r.backend for r in refs}:
        count = sum(r.backend == backend for r in refs)
        if count > MAX_REFERENCES:
            raise ProfileError(
                f"{file}: {count} reference measurements for {backend}; a profile holds at most "
                f"{MAX_REFERENCES} per backend"
            )
    return tuple(refs)


def parse_profile(data: Mapping[str, Any], file: Path) -> DeviceProfile:
    """Validate the parsed TOML of one profile file and build it; errors name the field and file."""
    # The version first: a newer file may hold fields this edgepack has never heard of.
    version = data.get("schema_version")
    if version is None:
        raise ProfileError(f"{file}: missing required field 'schema_version' ({_INT})")
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"{file}: schema_version {version} is not one this edgepack reads "
            f"(expected {SCHEMA_VERSION}); upgrade edgepack or convert the file"
        )
    top_spec = {k: v for k, v in FIELDS.items() if "." not in k}
    extra_tables = ("sources", "notes", "references")
    top = {k: v for k, v in data.items() if k not in (*_TABLES, *extra_tables)}
    flat = _check_fields(top, top_spec, "", file)
    for table in _TABLES:
        raw = data.get(table)
        if raw is None and table in OPTIONAL_TABLES:
            continue
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ProfileError(f"{file}: '{table}' must be a table ([{table}])")
        spec = {k.split(".", 1)[1]: v for k, v in FIELDS.items() if k.startswith(f"{table}.")}
        for key, value in _check_fields(raw, spec, f"{table}.", file).items():
            flat[f"{table}.{key}"] = value
    _check_positive(flat, file)

    if flat["name"] != file.stem:
        raise ProfileError(
            f"{file}: field 'name' is {flat['name']!r} but the file is named {file.name!r}; "
            "they must match so the profile can be found by name"
        )
    unknown = sorted(set(flat["cpu.features"]) - set(ISA_FEATURES))
    if unknown:
        raise ProfileError(
            f"{file}: field 'cpu.features' has unknown feature(s) {', '.join(unknown)}; "
            f"known: {', '.join(ISA_FEATURES)}"
        )
    _check_choice(flat["defaults.backend"], BACKENDS, "defaults.backend", file)
    _check_choice(flat["defaults.quantization"], QUANTIZATIONS, "defaults.quantization", file)
    if flat["defaults.threads"] > flat["cpu.cores"]:
        raise ProfileError(
            f"{file}: field 'defaults.threads' is {flat['defaults.threads']} but the profile has "
            f"{flat['cpu.cores']} cores"
        )
    speedup = flat.get("cpu.all_core_speedup")
    if speedup is not None and speedup < 1.0:
        raise ProfileError(
            f"{file}: field 'cpu.all_core_speedup' is {speedup:g}; expected the speed-up of all "
            "cores over one, at least 1"
        )
    _check_choice(flat["memory.bandwidth_kind"], BANDWIDTH_KINDS, "memory.bandwidth_kind", file)
    if flat.get("memory.bandwidth_kind") == "estimate" and "memory.bandwidth_gbs" not in data.get(
        "notes", {}
    ):
        raise ProfileError(
            f"{file}: an estimated 'memory.bandwidth_gbs' needs its reasoning in "
            "[notes] 'memory.bandwidth_gbs'"
        )

    def section(name: str) -> dict[str, Any]:
        return {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(f"{name}.")}

    cpu = section("cpu")
    cpu["features"] = frozenset(cpu["features"])
    return DeviceProfile(
        name=flat["name"],
        description=flat["description"],
        soc=flat["soc"],
        cpu=Cpu(**cpu),
        memory=Memory(**section("memory")),
        os=OsImage(**section("os")),
        defaults=Defaults(**section("defaults")),
        accelerator=Accelerator(**section("accelerator")) if "accelerator" in data else None,
        power=Power(**section("power")),
        references=_references(data.get("references", []), file),
        sources=_sources(data.get("sources", {}), file),
        notes=_notes(data.get("notes", {}), file),
        path=file,
    )


def read_profile_file(path: str | os.PathLike[str]) -> DeviceProfile:
    """Load one profile file, whatever directory it is in."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"{file}: profile file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{file}: not valid TOML: {exc}") from None
    return parse_profile(data, file)


def missing_sources(profile: DeviceProfile) -> list[str]:
    """Figure fields that hold a value but cite no source (empty for a well-kept profile).

    A detected host is its own source: its figures were read from the machine.
    """
    if profile.detected:
        return []
    missing = []
    for name in FIGURE_FIELDS:
        table, _, key = name.rpartition(".")
        holder = getattr(profile, table) if table else profile
        if holder is not None and getattr(holder, key) is not None and name not in profile.sources:
            if name == "memory.bandwidth_gbs" and profile.memory.bandwidth_kind == "estimate":
                continue  # a labelled estimate, reasoned in [notes]
            missing.append(name)
    return missing


@dataclass(frozen=True)
class QuantizationScheme:
    """The int8 scheme a profile's `defaults.quantization` stands for on its CPU, as Optimum's
    hardware presets (`arm64`, `avx512_vnni`) do: what `--profile` sets unless the user says.

    method is None for an fp16/fp32 default (no int8 model is wanted there). Arm cores get int8
    activations with int8 per-channel weights (onnxruntime's S8S8 QDQ, which its Arm kernels
    take directly); x86 keeps uint8 activations with int8 weights (U8S8, the VPMADDUBSW/VNNI
    operand order), per tensor. Activations keep their zero point (not symmetric): MLAS's
    symmetric convolution needs only the weights' to be 0, and with a zero point of 0 every
    Relu and ReLU6 stays in the graph, run in float between a dequantize and a quantize
    (compress/cost.py's CLAMPS): on this x86 host that made MobileNet v2 int8 2.0x slower.
    """

    method: str | None
    activation_type: str
    weight_type: str
    per_channel: bool
    activation_symmetric: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_arm(profile: DeviceProfile) -> bool:
    """True for an Arm CPU: bundled profiles say armv8.x-a, a detected host aarch64/arm64."""
    arch = profile.cpu.arch.lower()
    return arch.startswith(("arm", "aarch64")) or "neon" in profile.cpu.features


def quantization_scheme(profile: DeviceProfile) -> QuantizationScheme:
    """The profile's default quantization as an int8 scheme for its CPU (see QuantizationScheme).

    >>> from edgepack.device_profiles import load_profile
    >>> quantization_scheme(load_profile("rpi-zero-2w")).activation_type
    'int8'
    """
    method = {"int8-dynamic": "dynamic", "int8-static": "static"}.get(profile.defaults.quantization)
    arm = is_arm(profile)
    return QuantizationScheme(
        method=method,
        activation_type="int8" if arm else "uint8",
        weight_type="int8",
        per_channel=arm,
        activation_symmetric=False,
    )


def clamp_threads(profile: DeviceProfile, requested: int | None = None) -> int:
    """The thread count to run with: the profile's default, or the request capped at its cores."""
    if requested is None:
        return profile.defaults.threads
    if requested < 1:
        raise ProfileError(f"threads must be 1 or more, got {requested}")
    if requested > profile.cpu.cores:
        warnings.warn(
            f"{requested} threads requested but profile '{profile.name}' has "
            f"{profile.cpu.cores} cores; using {profile.cpu.cores}",
            UserWarning,
            stacklevel=2,
        )
        return profile.cpu.cores
    return requested
