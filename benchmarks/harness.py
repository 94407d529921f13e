"""The benchmark harness: time packs on this machine, or on it under a device profile's cores and
threads, by MLPerf-style rules, and return one BenchResult per pack (the CLI is `edgepack bench`).

>>> result = benchmark("digits.edgepack", min_count=100, min_duration_s=1)  # doctest: +SKIP
>>> result.label, result.headline  # doctest: +SKIP
('measured on Intel(R) Xeon(R) CPU @ 2.20GHz', {'metric': 'p90 latency', 'value': 4.1e-05, ...})
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edgepack.benchmarks.errors import BenchmarkError
from edgepack.device_profiles import HOST, DeviceProfile, clamp_threads, detect_host, load_profile
from edgepack.runtime import (
    EdgepackError,
    Model,
    ModelEntry,
    PackManifest,
    __version__,
    load,
    read_manifest,
)
from edgepack.runtime.pack import PackReader

from .cold_start import measure_cold_start
from .conditions import Conditions, read_conditions
from .inputs import (
    InputSpec,
    check_dims,
    check_names,
    describe_inputs,
    manifest_examples,
    read_npz,
    synthetic_inputs,
)
from .scenarios import Progress, measure, progress_bar, search_rate, serve
from .stats import summarize

PathLike = str | os.PathLike[str]
SCENARIOS = ("single-stream", "offline", "server", "stream")
SAMPLE_RATE_NAMES = ("sr", "sample_rate", "sampling_rate")  # rank-0 inputs giving audio Hz
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
TAIL_SAMPLES = 10  # a percentile is trusted when at least this many queries lie beyond it
SERVER_UTILIZATION = 0.5  # the server rate when none is given: half of one stream's capacity
MAX_SAMPLES_KEPT = 10_000  # raw latencies kept in a result for plots; statistics use them all
AFTER_RUN_SIGNS = ("°C", "throttl", "MHz")  # the conditions warnings about heat and clocks


@dataclass(frozen=True)
class BenchSettings:
    """How to run: the scenario and its minimums. Validated here, recorded in every result."""

    scenario: str = "single-stream"
    warmup: int = 10
    min_count: int = 200
    min_duration_s: float = 5.0
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    rate: float | None = None
    p99_bound_ms: float | None = None
    dims: Mapping[str, int] = field(default_factory=dict)
    cold_starts: int = 3
    seed: int = 0
    inputs: Mapping[str, Any] = field(default_factory=dict)  # name -> InputSpec.to_dict()
    feed: Mapping[str, str] = field(default_factory=dict)  # stream: input <- output
    chunk_s: float | None = None  # stream: seconds of signal per call, for the real-time factor

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise BenchmarkError(
                f"unknown scenario {self.scenario!r}; expected one of {', '.join(SCENARIOS)}"
            )
        checks = (
            ("warmup", self.warmup, 0),
            ("min_count", self.min_count, 1),
            ("min_duration_s", self.min_duration_s, 0),
            ("cold_starts", self.cold_starts, 0),
        )
        for name, value, least in checks:
            if not isinstance(value, int | float) or value < least:
                raise BenchmarkError(f"{name} must be a number >= {least}, got {value!r}")
        pairs = (
            ("rate", self.rate),
            ("p99_bound_ms", self.p99_bound_ms),
            ("chunk_s", self.chunk_s),
        )
        for name, value in pairs:
            if value is not None and not value > 0:
                raise BenchmarkError(f"{name} must be greater than 0, got {value!r}")
        if not self.batch_sizes or any(int(b) != b or b < 1 for b in self.batch_sizes):
            raise BenchmarkError(f"batch_sizes must be positive integers, got {self.batch_sizes}")
        object.__setattr__(self, "batch_sizes", tuple(sorted({int(b) for b in self.batch_sizes})))
        object.__setattr__(self, "dims", dict(self.dims))
        object.__setattr__(self, "inputs", dict(self.inputs))
        object.__setattr__(self, "feed", dict(self.feed))
        if self.feed and self.scenario != "stream":
            raise BenchmarkError("feed (--feed) is for the stream scenario; add --stream")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        return data


@dataclass
class BenchResult:
    """One pack's benchmark, JSON-ready (times in seconds). `label` says where it was measured:
    "measured on <host>" or "host (<host>) under profile <P>", never "measured on <P>"."""

    pack: str
    name: str
    model_file: str
    format: str
    precision: str
    backend: str
    providers: list[str]
    threads: int
    label: str
    host: str
    profile: str | None
    emulation: dict[str, Any] | None  # profile cores emulated by affinity and threads
    cpus: list[int]  # the CPUs the timed run was allowed on, read back during the run
    scenario: str
    settings: dict[str, Any]
    input_shapes: dict[str, list[int]]  # per query (offline: at the chosen batch size)
    latency: dict[str, Any]  # stats.LatencySummary.to_dict() of the timed queries
    duration_s: float  # measured time (the blocks of this pack's queries, or the server run)
    items_per_query: int  # batch size
    throughput_per_s: float  # items per second
    headline: dict[str, Any]  # {"metric", "value", "unit"}: p90 / throughput / server p99
    model_size_bytes: int
    cold_start: dict[str, Any] | None
    details: dict[str, Any]  # offline: the batch sweep; server: rate, queueing, rate search
    estimate: dict[str, Any] | None  # estimate.estimate_manifest(), or why there is none
    conditions: dict[str, Any]  # read_conditions() readings before and after the run
    warnings: list[str]
    metrics: dict[str, Any]  # the pack manifest's quality metrics, per compression stage
    samples_s: list[float]  # up to MAX_SAMPLES_KEPT of the latencies, evenly strided, for plots
    edgepack_version: str
    created: str
    inputs: dict[str, str] = field(default_factory=dict)  # per input: shape and value source

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BenchResult:
        """The inverse of to_dict (e.g. of a saved --json output); ignores unknown keys."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def benchmark(
    pack: PathLike,
    *,
    profile: PathLike | None = None,
    backend: str = "auto",
    threads: int | None = None,
    providers: list[str] | None = None,
    scenario: str = "single-stream",
    warmup: int = 10,
    min_count: int = 200,
    min_duration_s: float = 5.0,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    rate: float | None = None,
    p99_bound_ms: float | None = None,
    dims: Mapping[str, int] | None = None,
    cold_starts: int = 3,
    seed: int = 0,
    inputs: Mapping[str, InputSpec | str] | None = None,
    input_file: PathLike | None = None,
    feed: Mapping[str, str] | None = None,
    chunk_s: float | None = None,
    estimate: bool = False,
    progress: bool | None = None,
) -> BenchResult:
    """Benchmark one pack; `edgepack bench PACK` with the same options.

    profile: a profile name or .toml path. Other than 'host', its core count is emulated by CPU
    affinity and its default backend and threads are used unless given (threads are clamped to
    its cores with a warning). backend "auto" means the profile's default, else the runtime's.
    scenario: "single-stream" (headline p90), "offline" (throughput at the best of
    `batch_sizes` the model accepts) or "server" (Poisson arrivals at `rate` per second, default
    half of capacity; with `p99_bound_ms`, also the highest rate whose p99 stays within it).
    Every timed phase runs at least `min_count` queries AND `min_duration_s` seconds after
    `warmup` queries. dims: sizes of named input dims (default batch 1, others 64).
    inputs: per input an InputSpec, or its text ("1x3x480x640", "16000", "zeros"); input_file:
    an .npz of real samples by input name. Both override the pack's own example inputs
    (manifest example_inputs), which override dims; unknown input or dim names are refused.
    scenario "stream": a stateful model called back to back, each call fed the outputs named in
    `feed` ({input: output}; default the pack's example_inputs.stream, else outputs named like
    an input plus a suffix, e.g. state <- stateN); per-chunk percentiles, and the real-time
    factor (latency / chunk_s, chunk_s default: from a rank-0 sample-rate input and the signal
    length).
    cold_starts: new processes timed for import + load + first inference (0: skip).
    estimate: also estimate the latency on the profile (on this host without one) with
    edgepack.benchmarks.estimate, from the pack's cost summary; labelled "estimated", and the
    reason when there is none (no cost summary, estimator missing) instead of a number.
    Time: each timed phase runs max(min_count queries, min_duration_s), plus the cold-start
    processes (about 12 s with the defaults). progress: a line per phase on stderr; None (the
    default) shows it when stderr is a terminal.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    return compare(
        [pack],
        profile=profile,
        backend=backend,
        threads=threads,
        providers=providers,
        scenario=scenario,
        warmup=warmup,
        min_count=min_count,
        min_duration_s=min_duration_s,
        batch_sizes=batch_sizes,
        rate=rate,
        p99_bound_ms=p99_bound_ms,
        dims=dims,
        cold_starts=cold_starts,
        seed=seed,
        inputs=inputs,
        input_file=input_file,
        feed=feed,
        chunk_s=chunk_s,
        estimate=estimate,
        progress=progress,
    )[0]


def compare(packs: Sequence[PathLike], **options: Any) -> list[BenchResult]:
    """Benchmark several packs under the same conditions (`edgepack bench A B --compare`); takes
    benchmark()'s keyword options. Single-stream and offline queries of the packs are
    interleaved in blocks of ~0.1 s, in alternating order, so drift hits all packs alike; the
    server scenario, being timed by the clock, runs the packs one after another."""
    if not packs:
        raise BenchmarkError("no packs to benchmark; give at least one pack path")
    profile = options.pop("profile", None)
    backend = options.pop("backend", "auto")
    threads = options.pop("threads", None)
    providers = options.pop("providers", None)
    estimate = options.pop("estimate", False)
    show = options.pop("progress", False)
    dims = options.pop("dims", None) or {}
    given = {
        name: spec if isinstance(spec, InputSpec) else _spec(name, spec)
        for name, spec in (options.pop("inputs", None) or {}).items()
    }
    input_file = options.pop("input_file", None)
    arrays = read_npz(os.fspath(input_file), str(input_file)) if input_file else {}
    settings = BenchSettings(
        dims=dims,
        inputs={k: v.to_dict() for k, v in given.items()},
        feed=options.pop("feed", None) or {},
        **options,
    )
    setup = _setup(profile, threads)
    manifests = [read_manifest(p) for p in packs]
    backends = [_backend_for(m, backend, setup) for m in manifests]
    names = ", ".join(m.name for m in manifests)

    def bar(phase: str) -> Progress | None:
        return progress_bar(f"{names}: {phase}") if show else None

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    before = read_conditions(cpus=setup.cpus)
    with _pinned(setup.cpus if setup.emulation else None):
        cpus_seen = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        models = [
            load(p, backend=b, threads=setup.threads, providers=providers)
            for p, b in zip(packs, backends, strict=True)
        ]
        check_dims([m.entry for m in models], settings.dims)
        sources = [
            _inputs_for(p, m, given, arrays, settings) for p, m in zip(packs, models, strict=True)
        ]
        for model, source in zip(models, sources, strict=True):
            _first_call(model, source.make(source.dims, settings.seed))
        progress = bar("cold start") if settings.cold_starts else None
        colds = []
        for i, (path, model) in enumerate(zip(packs, models, strict=True)):
            colds.append(_cold_start(path, model, sources[i], setup, settings))
            if progress:
                progress((i + 1) / len(models), f"{i + 1}/{len(models)} packs")
        runs = SCENARIO_RUNNERS[settings.scenario](models, sources, settings, bar)
    after = read_conditions(cpus=setup.cpus, sample_s=0)
    conditions = {"before": before.readings, "after": after.readings}
    results = []
    together = zip(packs, manifests, models, colds, runs, sources, strict=True)
    for path, manifest, model, cold, run, source in together:
        notes = [
            *setup.warnings,
            *_backend_notes(manifest, model, backend, setup),
            *run.warnings,
            *_tail_warnings(run.latencies),
        ]
        notes += [w for w in before.warnings if w not in notes]
        notes += [f"after the run: {w}" for w in after.warnings if _changes_in_run(w, before)]
        summary = summarize(run.latencies, batch_size=run.items, seed=settings.seed).to_dict()
        info = model.describe()
        result = BenchResult(
            pack=os.fspath(path),
            name=manifest.name,
            model_file=info["model_file"],
            format=info["format"],
            precision=info["precision"],
            backend=info["backend"],
            providers=info["providers"],
            threads=info["threads"],
            label=setup.label,
            host=setup.host,
            profile=setup.profile.name if setup.profile else None,
            emulation=setup.emulation,
            cpus=cpus_seen,
            scenario=settings.scenario,
            settings=settings.to_dict(),
            input_shapes={k: list(v.shape) for k, v in run.feeds.items()},
            latency=summary,
            duration_s=run.duration_s,
            items_per_query=run.items,
            throughput_per_s=run.items * summary["count"] / run.duration_s,
            headline=_headline(settings.scenario, summary, run),
            model_size_bytes=model.entry.size_bytes,
            cold_start=cold,
            details=run.details,
            estimate=None,
            conditions=conditions,
            warnings=notes,
            metrics=dict(manifest.metrics),
            samples_s=_kept(run.latencies),
            edgepack_version=__version__,
            created=created,
            inputs=describe_inputs(run.feeds, source.specs, source.arrays),
        )
        if estimate:
            result.estimate = _estimate(manifest, result.backend, setup)
            if setup.emulation is None and settings.scenario == "single-stream":
                result.estimate = _recorded(result.estimate, summary["percentiles_s"]["p50"] * 1e3)
            result.warnings += [f"estimate: {n}" for n in result.estimate.get("notes", [])]
        results.append(result)
    return results


def _cold_start(
    path: PathLike, model: Model, source: _Inputs, setup: _Setup, settings: BenchSettings
) -> dict[str, Any] | None:
    if not settings.cold_starts:
        return None
    with tempfile.TemporaryDirectory(prefix="edgepack-cold-") as tmp:
        feeds = os.path.join(tmp, "feeds.npz")  # the new processes run on the same inputs
        np.savez(feeds, **source.make(source.dims, settings.seed))
        return measure_cold_start(
            path,
            backend=model.backend,  # what "auto" resolved to here, so both processes run the same
            threads=setup.threads,
            dims=source.dims,
            cpus=setup.cpus if setup.emulation else None,
            repeats=settings.cold_starts,
            feeds_file=feeds,
        )


# --- what to feed ---------------------------------------------------------------------------


@dataclass
class _Inputs:
    """One pack's inputs: specs and real arrays (the pack's examples under the user's), and
    the dims for the rest."""

    entry: ModelEntry
    specs: dict[str, InputSpec]
    arrays: dict[str, np.ndarray]
    dims: dict[str, int]
    stream: dict[str, str]

    def make(self, dims: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
        return synthetic_inputs(self.entry, dict(dims), seed, self.specs, self.arrays)


def _inputs_for(
    pack: PathLike,
    model: Model,
    given: Mapping[str, InputSpec],
    arrays: Mapping[str, np.ndarray],
    settings: BenchSettings,
) -> _Inputs:
    check_names(model.entry, given, "--input")
    check_names(model.entry, arrays, "--inputs")
    section = model.manifest.example_inputs or {}
    stored: dict[str, np.ndarray] = {}
    if section.get("file"):
        with PackReader(pack) as reader:
            stored = read_npz(reader.read(section["file"]), f"{pack}/{section['file']}")
    dims = {**dict.fromkeys(_batch_names(model.entry), 1), **settings.dims}
    return _Inputs(
        model.entry,
        {**manifest_examples(model.manifest), **given},
        {**stored, **arrays},
        dims,
        dict(section.get("stream", {})),
    )


def _spec(name: str, text: Any) -> InputSpec:
    from .inputs import parse_input_spec

    if isinstance(text, Mapping):
        return InputSpec.from_dict(text)
    return parse_input_spec(f"{name}={text}")[1]


def _first_call(model: Model, feeds: dict[str, np.ndarray]) -> None:
    """One untimed run, so a model that fails on these inputs stops the benchmark with what
    was fed, not a traceback from the middle of a timing loop."""
    try:
        model.run(feeds)
    except EdgepackError:
        raise
    except Exception as exc:  # the interpreter's own error types
        fed = ", ".join(f"{k} {v}" for k, v in describe_inputs(feeds).items())
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchmarkError(
            f"{model.manifest.name}: {model.entry.path} failed on the benchmark inputs ({fed}): "
            f"{detail[:300]}. Give the inputs it needs: --input NAME=SPEC (e.g. sr=16000, "
            "state=zeros, x=1x3x480x640) or --inputs FILE.npz"
        ) from None


# --- where and how to run -------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    profile: DeviceProfile | None  # None: plain host
    label: str
    host: str
    cpus: list[int]
    threads: int
    emulation: dict[str, Any] | None
    warnings: list[str]


def _available_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no affinity control
        return list(range(os.cpu_count() or 1))


def _setup(profile: PathLike | None, threads: int | None) -> _Setup:
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise BenchmarkError(f"threads must be a positive integer, got {threads!r}")
    host = detect_host()
    available = _available_cpus()
    plain = _Setup(None, f"measured on {host.soc}", host.soc, available, 1, None, [])
    if profile is None:
        return replace(plain, threads=threads or host.defaults.threads)
    chosen = load_profile(profile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        requested = count = clamp_threads(chosen, threads)
    notes = [str(w.message) for w in caught]
    if chosen.detected:  # 'host': this machine as it is
        return replace(plain, profile=chosen, threads=count, warnings=notes)
    if _is_this_device(chosen, host, available):
        return replace(
            plain, profile=chosen, label=f"measured on {chosen.name}", threads=count, warnings=notes
        )
    cores = chosen.cpu.cores
    cpus = available[:cores]
    if cores > len(available):
        notes.append(
            f"profile '{chosen.name}' has {cores} cores but this process may use only "
            f"{len(available)} CPUs: the emulation is partial"
            + (f"; running {len(available)} threads, not {count}" if count > len(available) else "")
        )
        count = min(count, len(available))
    if not hasattr(os, "sched_setaffinity"):
        notes.append("this OS has no CPU affinity control: only the thread count is emulated")
    return _Setup(
        profile=chosen,
        label=f"host ({host.soc}) under profile {chosen.name}",
        host=host.soc,
        cpus=cpus,
        threads=count,
        emulation={
            "profile": chosen.name,
            "profile_cores": cores,
            "profile_threads": requested,
            "cpus": cpus,
            "threads": count,
            "complete": cores <= len(available),
        },
        warnings=notes,
    )


def _is_this_device(profile: DeviceProfile, host: DeviceProfile, cpus: list[int]) -> bool:
    """True when this machine is the profile's device: same core type and core count."""
    return profile.cpu.core == host.cpu.core and profile.cpu.cores == len(cpus)


@contextmanager
def _pinned(cpus: list[int] | None) -> Iterator[None]:
    """Run on `cpus` only, then restore. Affinity is per thread on Linux and inherited by the
    threads started meanwhile, so the runtime's thread pool (made at load) stays on them."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _backend_for(manifest: PackManifest, requested: str, setup: _Setup) -> str:
    """The backend to load: as asked, or under a profile the profile's default when the pack
    has a model for it (else the runtime's choice, with a note added by _backend_notes)."""
    if requested != "auto" or setup.emulation is None or setup.profile is None:
        return requested
    preferred = setup.profile.defaults.backend
    return preferred if manifest.model_for(preferred) else "auto"


def _backend_notes(
    manifest: PackManifest, model: Model, requested: str, setup: _Setup
) -> list[str]:
    if requested != "auto" or setup.emulation is None or setup.profile is None:
        return []
    preferred = setup.profile.defaults.backend
    if model.backend == preferred:
        return []
    return [
        f"profile '{setup.profile.name}' runs {preferred} by default, but pack "
        f"'{manifest.name}' has no model for it; measured with {model.backend}"
    ]


def _batch_names(entry: ModelEntry) -> list[str]:
    """The named first-axis dims of the inputs (the batch), or [] when any input's batch is
    fixed (such a model runs at its own batch only)."""
    firsts = [spec.shape[0] if spec.shape else None for spec in entry.inputs]
    if not firsts or not all(isinstance(d, str) for d in firsts):
        return []
    return sorted(set(firsts))


# --- scenarios ------------------------------------------------------------------------------


@dataclass
class _Run:
    latencies: np.ndarray
    duration_s: float
    items: int
    feeds: dict[str, np.ndarray]
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


Bar = Callable[[str], Progress | None]


def _timed(calls: list, s: BenchSettings, bar: Bar, scenario: str):
    """measure() under the settings' rules (warm-up, least count and duration), shown on a
    progress bar named after the scenario."""
    return measure(
        calls,
        warmup=s.warmup,
        min_count=s.min_count,
        min_duration_s=s.min_duration_s,
        progress=bar(scenario),
    )


def _single_stream(
    models: list[Model], sources: list[_Inputs], s: BenchSettings, bar: Bar
) -> list[_Run]:
    feeds = [src.make(src.dims, s.seed) for src in sources]
    calls = [_caller(m, f) for m, f in zip(models, feeds, strict=True)]
    latencies, spent = _timed(calls, s, bar, "single-stream")
    return [_Run(x, t, 1, f) for x, t, f in zip(latencies, spent, feeds, strict=True)]


def _offline(models: list[Model], sources: list[_Inputs], s: BenchSettings, bar: Bar) -> list[_Run]:
    """Sweep the batch sizes each model accepts briefly, then time every model at its best
    batch with the full minimums, interleaved like single-stream."""
    best_feeds, best_sizes, sweeps, notes = [], [], [], []
    for model, src in zip(models, sources, strict=True):
        base = src.dims
        names = _batch_names(model.entry)
        sizes = list(s.batch_sizes) if names else [1]
        note = [] if names else [f"{model.entry.path} has a fixed batch: offline runs batch 1"]
        sweep = []
        progress = bar(f"offline sweep {model.manifest.name}")
        for index, size in enumerate(sizes):
            feeds = src.make({**base, **dict.fromkeys(names, size)}, s.seed)
            (latencies,), (spent,) = measure(
                [_caller(model, feeds)],
                warmup=min(s.warmup, 2),
                min_count=max(3, s.min_count // 10),
                min_duration_s=s.min_duration_s / len(sizes),
            )
            sweep.append(
                {
                    "batch_size": size,
                    "throughput_per_s": size * latencies.size / spent,
                    "p50_s": float(np.median(latencies)),
                    "queries": int(latencies.size),
                }
            )
            if progress:
                progress((index + 1) / len(sizes), f"batch {size}")
        best = max(sweep, key=lambda row: row["throughput_per_s"])
        size = best["batch_size"]
        best_sizes.append(size)
        best_feeds.append(src.make({**base, **dict.fromkeys(names, size)}, s.seed))
        sweeps.append(sweep)
        notes.append(note)
    calls = [_caller(m, f) for m, f in zip(models, best_feeds, strict=True)]
    latencies, spent = _timed(calls, s, bar, "offline")
    return [
        _Run(x, t, b, f, {"batch_size": b, "sweep": sweep}, note)
        for x, t, b, f, sweep, note in zip(
            latencies, spent, best_sizes, best_feeds, sweeps, notes, strict=True
        )
    ]


def _server(models: list[Model], sources: list[_Inputs], s: BenchSettings, bar: Bar) -> list[_Run]:
    """Per model: measure the service time briefly, serve Poisson arrivals at the rate, and
    with a p99 bound search for the highest rate that keeps p99 within it."""
    runs = []
    for model, src in zip(models, sources, strict=True):
        feeds = src.make(src.dims, s.seed)
        call = _caller(model, feeds)
        (service,), _ = measure(
            [call],
            warmup=s.warmup,
            min_count=max(10, s.min_count // 10),
            min_duration_s=s.min_duration_s / 10,
        )
        capacity = 1.0 / float(service.mean())
        rate = s.rate or SERVER_UTILIZATION * capacity
        run = serve(
            call,
            rate,
            min_count=s.min_count,
            min_duration_s=s.min_duration_s,
            seed=s.seed,
            progress=bar(f"server {model.manifest.name}"),
        )
        notes = []
        if run["overloaded"]:
            notes.append(
                f"server run overloaded at {rate:.4g}/s (capacity ~{capacity:.4g}/s): "
                f"{run['unserved']} queries were still waiting when it stopped; the percentiles "
                "cover the served ones only and understate the latency"
            )
        details = {
            "rate_per_s": rate,
            "rate_source": "given" if s.rate else "default",
            "capacity_per_s": capacity,
            "utilization": rate / capacity,
            "service_p50_s": float(np.median(service)),
            "served": run["served"],
            "unserved": run["unserved"],
            "overloaded": run["overloaded"],
            "search": None,
        }
        if s.p99_bound_ms:
            details["search"] = search_rate(
                call,
                p99_bound_s=s.p99_bound_ms / 1000,
                capacity_per_s=capacity,
                min_count=s.min_count,
                min_duration_s=s.min_duration_s,
                seed=s.seed,
                progress=bar(f"rate search {model.manifest.name}"),
            )
        # The run's duration is its wall time, so its throughput is the served rate.
        runs.append(_Run(run["latencies_s"], run["wall_s"], 1, feeds, details, notes))
    return runs


def _stream(models: list[Model], sources: list[_Inputs], s: BenchSettings, bar: Bar) -> list[_Run]:
    """A stateful model called back to back, each call fed the state the last one returned
    (interleaved like single-stream; each pack keeps its own state)."""
    feeds, calls, details = [], [], []
    for model, src in zip(models, sources, strict=True):
        first = src.make(src.dims, s.seed)
        pairs = _feedback(model, s.feed or src.stream)
        chunk_s, chunk_source = _chunk_seconds(first, s.chunk_s)
        state = dict(first)
        calls.append(_streamer(model, state, pairs))
        feeds.append(first)
        details.append({"feed": pairs, "chunk_s": chunk_s, "chunk_source": chunk_source})
    latencies, spent = _timed(calls, s, bar, "stream")
    runs = []
    for x, t, f, d in zip(latencies, spent, feeds, details, strict=True):
        if d["chunk_s"]:
            d["real_time_factor"] = {
                q: float(np.percentile(x, float(q[1:]))) / d["chunk_s"]
                for q in ("p50", "p90", "p99")
            }
        runs.append(_Run(x, t, 1, f, d))
    return runs


def _streamer(
    model: Model, state: dict[str, np.ndarray], pairs: dict[str, str]
) -> Callable[[], Any]:
    """One call of the stream: run on `state`, then put the fed-back outputs in place of the
    inputs (a rebinding, no copy)."""
    run, links = model.run, list(pairs.items())

    def call() -> None:
        outputs = run(state)
        for name, output in links:
            state[name] = outputs[output]

    return call


def _feedback(model: Model, feed: Mapping[str, str]) -> dict[str, str]:
    """{input: output} to feed back, checked; without one, each input with an output named
    like it plus a suffix (state <- stateN, h <- h_out) of the same rank and dtype."""
    inputs = {t.name: t for t in model.entry.inputs}
    outputs = {t.name: t for t in model.entry.outputs}
    if not feed:
        feed = {
            name: out
            for name, spec in inputs.items()
            for out, o in outputs.items()
            if out != name
            and out.startswith(name)
            and len(o.shape) == len(spec.shape)
            and o.user_dtype == spec.user_dtype
        }
        if not feed:
            raise BenchmarkError(
                f"{model.entry.path}: the stream scenario needs outputs to feed back, and no "
                f"output is named like an input; give --feed INPUT=OUTPUT (inputs "
                f"{sorted(inputs)}, outputs {sorted(outputs)})"
            )
    bad = [f"{i}={o}" for i, o in feed.items() if i not in inputs or o not in outputs]
    if bad:
        raise BenchmarkError(
            f"--feed {', '.join(bad)}: expected INPUT=OUTPUT with inputs among {sorted(inputs)} "
            f"and outputs among {sorted(outputs)}"
        )
    return dict(feed)


def _chunk_seconds(
    feeds: Mapping[str, np.ndarray], given: float | None
) -> tuple[float | None, str]:
    """Seconds of signal per call: as given, or a rank-0 sample-rate input's value and the
    length of the one other rank-2 float input (its last axis is the samples)."""
    if given:
        return given, "given"
    rates = [k for k, v in feeds.items() if v.ndim == 0 and k.lower() in SAMPLE_RATE_NAMES]
    signals = [k for k, v in feeds.items() if v.ndim == 2 and v.dtype.kind == "f"]
    if len(rates) == 1 and len(signals) == 1:
        rate, samples = float(feeds[rates[0]]), feeds[signals[0]].shape[-1]
        if rate > 0:
            return samples / rate, f"{samples} samples of {signals[0]} at {rates[0]}={rate:g}"
    return None, "unknown: give chunk_s (--chunk-ms) for the real-time factor"


SCENARIO_RUNNERS: dict[str, Callable[..., list[_Run]]] = {
    "single-stream": _single_stream,
    "offline": _offline,
    "server": _server,
    "stream": _stream,
}


def _caller(model: Model, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    run = model.run
    return lambda: run(feeds)


# --- result pieces --------------------------------------------------------------------------


def _headline(scenario: str, latency: dict[str, Any], run: _Run) -> dict[str, Any]:
    if scenario == "offline":
        value = run.items * latency["count"] / run.duration_s
        return {"metric": f"throughput at batch {run.items}", "value": value, "unit": "items/s"}
    if scenario == "server":
        rate = run.details["rate_per_s"]
        value = latency["percentiles_s"]["p99"]
        return {"metric": f"p99 latency at {rate:.4g}/s", "value": value, "unit": "s"}
    if scenario == "stream":
        return {
            "metric": "p90 per-chunk latency",
            "value": latency["percentiles_s"]["p90"],
            "unit": "s",
        }
    return {"metric": "p90 latency", "value": latency["percentiles_s"]["p90"], "unit": "s"}


def _tail_warnings(latencies: np.ndarray, qs: Sequence[float] = (90.0, 99.0)) -> list[str]:
    short = [q for q in qs if latencies.size * (1 - q / 100) < TAIL_SAMPLES]
    if not short:
        return []
    need = math.ceil(TAIL_SAMPLES / (1 - max(short) / 100))
    listed = ", ".join(f"p{q:g}" for q in short)
    return [
        f"only {latencies.size} queries: {listed} rest on fewer than {TAIL_SAMPLES} queries "
        f"beyond them, so their values and intervals are rough; run at least {need} queries "
        "(min_count) for them"
    ]


def _changes_in_run(warning: str, before: Conditions) -> bool:
    """Heat, throttling and clock caps can set in during a run; the load average afterwards
    counts the benchmark itself, so only those other warnings are repeated after the run."""
    return warning not in before.warnings and any(s in warning for s in AFTER_RUN_SIGNS)


def _kept(latencies: np.ndarray) -> list[float]:
    stride = max(1, math.ceil(latencies.size / MAX_SAMPLES_KEPT))
    return [float(x) for x in latencies[::stride]]


def _estimate(manifest: PackManifest, backend: str, setup: _Setup) -> dict[str, Any]:
    """The estimated latency on the profile (the host without one), or why there is none.
    Imported here: the estimate is optional and its module may be absent."""
    profile = setup.profile or load_profile(HOST)
    threads = setup.emulation["profile_threads"] if setup.emulation else setup.threads
    try:
        from .estimate import estimate_manifest
    except ImportError as exc:
        return _no_estimate(profile.name, f"the latency estimator is not available ({exc})")
    try:
        return estimate_manifest(manifest, profile, backend=backend, threads=threads)
    except EdgepackError as exc:
        return _no_estimate(profile.name, str(exc))


def _recorded(estimate: dict[str, Any], measured_ms: float) -> dict[str, Any]:
    """Measured on the device itself: the measurement replaces the estimate, and the
    estimate's error is kept in the history so later estimates for the device improve."""
    if estimate.get("kind") != "estimated":
        return estimate
    from .estimate import record_measurement

    try:
        return record_measurement(estimate, measured_ms)
    except EdgepackError as exc:
        return {**estimate, "notes": [*estimate.get("notes", []), str(exc)]}


def _no_estimate(profile: str, reason: str) -> dict[str, Any]:
    return {"kind": "none", "profile": profile, "error": reason}
