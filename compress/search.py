"""Accuracy-aware search over a recipe's knobs with Optuna: one objective that builds a recipe
from a trial and returns its accuracy, latency per device profile and size; one study that any
number of workers share through a storage URL.

    [search]                              # in the recipe: the knobs, as data
    "stages.quantize.method" = ["static", "dynamic"]
    "stages.quantize.calibration" = ["minmax", "entropy", "percentile"]
    "stages.prune.channels_keep" = {low = 0.3, high = 1.0}          # also step, log
    "stages.export.formats" = [["onnx"], ["onnx", "tflite"]]        # lists are choices too

>>> result = run_search("cnn.toml", profiles=["rpi5"], budget=1.0, trials=20)  # doctest: +SKIP
>>> print(result.table("rpi5"))  # doctest: +SKIP

Each trial is a run_recipe with the recipe's budget set to the search's, so a trial whose first
stage already breaks the budget stops there (it is pruned: the later stages never run). The
storage URL is the only thing that changes between one machine (`sqlite:///study.db`) and many
(`postgresql+psycopg://user:pass@host/db`). Optuna's heartbeat marks the trial of a worker that
died as failed and queues it again, so a rerun of the same command (or another worker) redoes
it; a Ctrl-C queues the interrupted trial the same way. Completed trials live in the storage.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import socket
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from edgepack.compress.errors import QuantizationError
from edgepack.runtime import InputError, read_manifest

if TYPE_CHECKING:
    import optuna

    from .recipe import Recipe

PathLike = str | os.PathLike[str]
RANGE_KEYS = ("low", "high", "step", "log")
DEFAULT_TRIALS = 20
DEFAULT_HEARTBEAT_S = 20  # a dead worker's trial is failed and queued again after 2x this
MAX_RETRY = 3  # times one trial is queued again after its worker died
POPULATION = 8  # NSGA-II generation size: small, since a trial costs seconds to minutes


class StorageError(InputError):
    """The study storage cannot be reached or opened."""


# --- The search space: knobs by dotted path --------------------------------------------------


@dataclass(frozen=True)
class Knob:
    """One dimension of the search: a recipe option (dotted path) and its choices or range."""

    path: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value. Choices that Optuna cannot store (lists, tables) go as JSON."""
        if self.choices is not None:
            encoded = [_encode(c) for c in self.choices]
            return _decode(trial.suggest_categorical(self.path, encoded))
        if self.is_int:
            return trial.suggest_int(
                self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(
            self.path, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def to_dict(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        spec = {"low": self.low, "high": self.high, "step": self.step}
        if self.log:
            spec["log"] = True
        return {k: v for k, v in spec.items() if v is not None}


def _encode(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | tuple | dict) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def parse_space(table: Mapping[str, Any], recipe: Recipe) -> tuple[Knob, ...]:
    """The [search] table as knobs, every choice and both ends of every range checked against
    the recipe (an unknown path or a value the option refuses fails here, before any trial)."""
    base = dataclasses.replace(recipe, search=None)
    if not isinstance(table, Mapping):
        raise InputError(f"recipe [search] must be a table of option paths, got {table!r}")
    knobs = []
    for path, spec in _flatten(table).items():
        where = f"recipe [search] {path!r}"
        if isinstance(spec, list | tuple):
            if not spec:
                raise InputError(f"{where}: an empty list of choices; give at least one value")
            knob = Knob(path, choices=tuple(spec))
            values = list(spec)
        elif isinstance(spec, Mapping):
            for key in spec:
                if key not in RANGE_KEYS:
                    from .recipe import unknown_key_error

                    raise unknown_key_error(where, key, RANGE_KEYS)
            if "low" not in spec or "high" not in spec:
                raise InputError(f"{where}: a range needs low and high, got {dict(spec)}")
            low, high, step = spec["low"], spec["high"], spec.get("step")
            for name, value in (("low", low), ("high", high), ("step", step)):
                if value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise InputError(f"{where}: {name} must be a number, got {value!r}")
            if not low < high:
                raise InputError(
                    f"{where}: the range low={low} .. high={high} is empty; expected low < high"
                )
            if step is not None and not 0 < step <= high - low:
                raise InputError(f"{where}: step {step} must be in (0, high - low]")
            if spec.get("log") and low <= 0:
                raise InputError(f"{where}: a log range needs low > 0, got {low}")
            knob = Knob(path, low=low, high=high, step=step, log=bool(spec.get("log", False)))
            values = [low, high]
        else:
            raise InputError(
                f"{where}: expected a list of choices or a range {{low = .., high = ..}}, "
                f"got {spec!r}"
            )
        from .recipe import set_option

        for value in values:
            try:
                set_option(base, path, value)
            except InputError as exc:
                raise InputError(f"recipe [search]: {exc}") from None
        knobs.append(knob)
    return tuple(knobs)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Quoted keys ("stages.quantize.method") and nested TOML tables (stages.quantize.method
    unquoted) read the same: a table that is not a range is a level of the path."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not (set(value) & {"low", "high"}):
            if not value:
                raise InputError(f"recipe [search] {path!r}: an empty table")
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def trial_recipe(
    recipe: Recipe, params: Mapping[str, Any], budget: float, output: PathLike
) -> Recipe:
    """The recipe one trial runs: the knobs set, the search's budget, its own output."""
    from .recipe import set_option

    trial = dataclasses.replace(recipe, search=None, budget=float(budget), output=str(output))
    for path, value in params.items():
        trial = set_option(trial, path, value)
    return trial


# --- Objectives: what a trial's pack scores on each profile ---------------------------------


@dataclass
class ProfileFigures:
    """A pack on one profile: the model that profile's backend runs, its accuracy (through
    edgepack.runtime, from the recipe's budget checks), its latency (measured when this host is
    the profile, else estimated) and size."""

    profile: str
    model: str
    accuracy: float
    drop: float
    latency_ms: float
    latency_kind: str
    size_bytes: int


def pack_figures(pack: PathLike, profiles: Sequence[Any]) -> list[ProfileFigures]:
    """Accuracy, latency and size of a recipe's pack on each profile (DeviceProfile objects)."""
    manifest = read_manifest(pack)
    scores: dict[str, float] = {}
    source = None
    for stage in manifest.provenance.get("stages", []):
        check = stage.get("budget_check")
        if check:
            source = check["source"]
            scores.update({p: s[check["metric"]] for p, s in check["models"].items()})
    if source is None:
        raise InputError(f"{pack}: the pack records no budget check, so it has no accuracy")
    result = []
    for profile in profiles:
        entry = manifest.model_for(profile.defaults.backend)
        backend = profile.defaults.backend if entry is not None else "onnxruntime"
        entry = entry or manifest.models[0]
        accuracy = scores.get(entry.path, source)  # unscored: the source's own weights
        latency, kind = pack_latency(pack, manifest, profile, backend, entry)
        result.append(
            ProfileFigures(
                profile.name, entry.path, accuracy, source - accuracy, latency, kind,
                entry.size_bytes,
            )
        )  # fmt: skip
    return result


def pack_latency(
    pack: PathLike, manifest: Any, profile: Any, backend: str, entry: Any
) -> tuple[float, str]:
    """(latency ms, "measured" or "estimated") of the pack's `entry` on the profile, batch 1."""
    from edgepack.benchmarks.estimate import estimate_manifest

    from .quantize import host_is

    if host_is(profile):
        from edgepack.benchmarks.inputs import synthetic_inputs
        from edgepack.runtime import load

        from .evaluate import measure_latency

        model = load(pack, backend=backend, threads=profile.defaults.threads)
        feeds = synthetic_inputs(entry)
        (latency,) = measure_latency([model], feeds, threads=profile.defaults.threads)
        return float(latency.p50_ms), "measured"
    return float(estimate_manifest(manifest, profile, backend=backend)["latency_ms"]), "estimated"


# --- The study -----------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """The storage URL with its password replaced by ***, for messages and reports."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: hide anything between : and @
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def open_storage(url: str, heartbeat_s: int = DEFAULT_HEARTBEAT_S) -> Any:
    """Optuna RDB storage with a heartbeat: a trial whose worker stops beating for 2x
    heartbeat_s is failed and queued again (RetryFailedTrialCallback) by the next worker that
    starts a trial. Raises StorageError naming the URL (password hidden) and what to check."""
    import optuna
    import sqlalchemy.exc

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes
    elif url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_s,
                    grace_period=2 * heartbeat_s,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                    ),
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # workers starting together race to create the tables: the loser tries again
            racing = isinstance(
                exc, sqlalchemy.exc.IntegrityError | sqlalchemy.exc.ProgrammingError
            ) or "already exists" in str(exc)
            if attempt == 4 or not racing:
                raise StorageError(_storage_message(url, exc)) from None
            time.sleep(0.5 + attempt)
        except (ImportError, ValueError) as exc:
            raise StorageError(_storage_message(url, exc)) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _storage_message(url: str, exc: BaseException) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason_line = reason[0] if reason else type(exc).__name__
    if url.startswith("sqlite"):
        check = "that the folder exists and is writable"
    elif url.startswith("postgresql"):
        check = (
            "that the server is running and reachable (host, port, firewall, listen_addresses), "
            "the user and password, and that the database exists (createdb)"
        )
    else:
        check = "the URL: sqlite:///FILE or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"
    return f"cannot open study storage {safe_url(url)}: {reason_line}; check {check}"


def open_study(
    name: str, storage: Any, profiles: Sequence[str], space: Sequence[Knob], budget: float
) -> optuna.Study:
    """Create or load the study, shared by every worker. It records the profiles, space and
    budget it was started with: a worker with other ones is refused rather than mixing them."""
    import optuna
    import sqlalchemy.exc

    directions = ["maximize", *["minimize"] * len(profiles), "minimize"]
    sampler = optuna.samplers.NSGAIISampler(population_size=POPULATION)
    settings = {
        "profiles": list(profiles),
        "budget": float(budget),
        "space": {k.path: k.to_dict() for k in space},
    }
    for attempt in range(5):  # workers starting together race to create the tables
        try:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                directions=directions,
                sampler=sampler,
                load_if_exists=True,
            )
            break
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if attempt == 4:
                raise StorageError(_storage_message(storage.url, exc)) from None
            time.sleep(0.5 + attempt)
        except ValueError as exc:  # e.g. the study exists with other directions
            raise InputError(f"study {name!r}: {exc}") from None
    started = study.user_attrs.get("settings")
    if started is None:
        study.set_user_attr("settings", settings)
    elif started != settings:
        changed = [k for k in settings if settings[k] != started.get(k)]
        raise InputError(
            f"study {name!r} was started with other {', '.join(changed)} "
            f"({', '.join(f'{k}={started.get(k)}' for k in changed)}); rerun with the same "
            "options to continue it, or give a new --study name"
        )
    return study


# --- Running the search ----------------------------------------------------------------------


@dataclass
class TrialRow:
    """One finished trial as the tables show it."""

    number: int
    params: dict[str, Any]
    figures: dict[str, ProfileFigures]
    state: str = "complete"  # or "pruned"
    note: str = ""
    worker: str = ""
    pack: str = ""


@dataclass
class SearchResult:
    """The study's finished trials, the Pareto front and the fastest pack within budget per
    profile, and where the packs and the report were written."""

    study: str
    storage: str
    budget: float
    profiles: list[str]
    rows: list[TrialRow]
    fronts: dict[str, list[TrialRow]] = field(default_factory=dict)
    best: dict[str, TrialRow] = field(default_factory=dict)
    packs: dict[str, Path] = field(default_factory=dict)
    report: Path | None = None
    ran: list[int] = field(default_factory=list)  # trial numbers this call ran

    def table(self, profile: str, extra: Sequence[tuple[str, ProfileFigures]] = ()) -> str:
        """The Pareto front on one profile: accuracy against latency, with size; `extra` adds
        reference rows (title, figures) such as a baseline's."""
        header = f"{'trial':>10}  {'accuracy':>8}  {'drop':>6}  {'latency ms':>10}  {'size KiB':>8}"
        lines = [f"Pareto front on {profile} (budget {self.budget:g} points)", header]
        for row in self.fronts.get(profile, []):
            lines.append(_row_line(f"#{row.number}", row.figures[profile], _params(row.params)))
        for title, figures in extra:
            lines.append(_row_line(title, figures, "reference"))
        if not self.fronts.get(profile):
            lines.append("  no trial met the budget; the closest:")
            for row in closest(self.rows):
                lines.append(f"  #{row.number} {_params(row.params)}: {row.note}")
        return "\n".join(lines)


def _row_line(title: str, f: ProfileFigures, what: str) -> str:
    return (
        f"{title:>10}  {f.accuracy:8.2f}  {0.0 - f.drop:+6.2f}  {f.latency_ms:10.3f}  "
        f"{f.size_bytes / 1024:8.1f}  {f.latency_kind}, {f.model}; {what}"
    )


def _params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else json.dumps(value).strip('"')


def closest(rows: Sequence[TrialRow], count: int = 3) -> list[TrialRow]:
    """The pruned trials nearest the budget (by the drop their stop message records)."""
    pruned = [r for r in rows if r.state == "pruned"]

    def drop(row: TrialRow) -> float:
        found = re.search(r"\(-([0-9.]+) points", row.note)
        return float(found.group(1)) if found else math.inf

    return sorted(pruned, key=drop)[:count]


def pareto_front(rows: Sequence[TrialRow], profile: str) -> list[TrialRow]:
    """Complete trials no other beats on both accuracy and latency on the profile, fastest
    first (the first is the fastest pack within budget)."""
    done = sorted(
        (r for r in rows if r.state == "complete"),
        key=lambda r: (r.figures[profile].latency_ms, -r.figures[profile].accuracy, r.number),
    )
    front: list[TrialRow] = []
    for row in done:
        if not front or row.figures[profile].accuracy > front[-1].figures[profile].accuracy:
            front.append(row)
    return front


def run_search(
    recipe: Recipe | PathLike,
    *,
    profiles: Sequence[str],
    budget: float | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    output: PathLike = "edgepack-search",
    heartbeat_s: int = DEFAULT_HEARTBEAT_S,
    seed: int | None = None,
    report: bool = True,
) -> SearchResult:
    """Run trials until the study holds `trials` finished ones (complete or pruned, counted
    over every worker) or `timeout` seconds pass, then write the fronts, the fastest pack
    within budget per profile (OUTPUT/<profile>.edgepack) and the report.

    storage: an Optuna RDB URL (default sqlite:///OUTPUT/study.db); study: its name (default
    the recipe's name). Rerunning the same call continues the same study.
    """
    import optuna

    from edgepack.device_profiles import load_profile

    from .recipe import Recipe

    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe)
    if not recipe.search:
        raise InputError(
            f"recipe {recipe.name!r} has no [search] table: add the knobs to vary, e.g. "
            '"stages.quantize.method" = ["static", "dynamic"]'
        )
    space = parse_space(recipe.search, recipe)
    if not profiles:
        raise InputError("a search needs at least one --profile")
    devices = [load_profile(p) for p in profiles]  # an unknown name fails here
    budget = recipe.budget if budget is None else budget
    if budget is None or budget < 0:
        raise InputError("a search needs a budget: --budget POINTS (>= 0) or budget in the recipe")
    names = [d.name for d in devices]
    if trials is None and timeout is None:
        trials = DEFAULT_TRIALS
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead
    store = open_storage(url, heartbeat_s)
    name = study or recipe.name
    the_study = open_study(name, store, names, space, budget)
    if seed is not None:
        the_study.sampler = optuna.samplers.NSGAIISampler(population_size=POPULATION, seed=seed)
    with warnings.catch_warnings():  # the heartbeat API is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(the_study)  # a dead worker's trial, queued again
    worker = f"{socket.gethostname()}:{os.getpid()}"
    objective = _Objective(recipe, space, devices, float(budget), output / "trials", worker)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    callbacks = [objective.stop_if_interrupted]  # a Ctrl-C held while Optuna was busy
    if trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(trials, states=finished))
    count = len(the_study.get_trials(deepcopy=False, states=finished))
    if trials is None or count < trials:
        print(
            f"search {name!r} in {safe_url(url)}: {count} finished trial(s) so far, "
            f"budget {budget:g} points, profiles {', '.join(names)}",
            flush=True,
        )
        here = threading.current_thread() is threading.main_thread()  # signals: main only
        previous = signal.signal(signal.SIGINT, objective.on_ctrl_c) if here else None
        try:
            the_study.optimize(objective, timeout=timeout, callbacks=callbacks)
            objective.stop_if_interrupted()
        except KeyboardInterrupt:
            objective.requeue_current(the_study)
            raise
        finally:
            if here:
                signal.signal(signal.SIGINT, previous)
    return summarize(
        the_study, names, float(budget), url, output, recipe, report=report, ran=objective.ran
    )


class _Objective:
    """Build the trial's recipe, run it, return (accuracy, latency per profile, size)."""

    def __init__(
        self,
        recipe: Recipe,
        space: Sequence[Knob],
        profiles: Sequence[Any],
        budget: float,
        trials_dir: Path,
        worker: str,
    ) -> None:
        self.recipe, self.space, self.profiles = recipe, space, profiles
        self.budget, self.trials_dir, self.worker = budget, trials_dir, worker
        self.current: int | None = None  # the trial a Ctrl-C would leave failed: to requeue
        self.running = False  # in our code (not Optuna's) of a trial
        self.ran: list[int] = []
        self.interrupted = False

    def on_ctrl_c(self, signum: int, frame: Any) -> None:
        """SIGINT: stop the running trial at once (Optuna marks it failed, requeue_current
        queues it again); while Optuna records or starts a trial, wait until it has: optuna 5.0
        turns a KeyboardInterrupt there into an UnboundLocalError and leaves the trial running."""
        if self.running:
            raise KeyboardInterrupt
        self.interrupted = True

    def stop_if_interrupted(self, *_: Any) -> None:
        """Raise the Ctrl-C that came while Optuna was busy (an Optuna callback too)."""
        if self.interrupted:
            raise KeyboardInterrupt

    def __call__(self, trial: optuna.Trial) -> list[float]:
        self.current, self.running = trial._trial_id, True
        try:
            self.stop_if_interrupted()  # a Ctrl-C while Optuna started this trial
            return self._run(trial)
        finally:
            self.running = False

    def _run(self, trial: optuna.Trial) -> list[float]:
        from .recipe import run_recipe

        params = {k.path: k.suggest(trial) for k in self.space}
        trial.set_user_attr("worker", self.worker)
        self.ran.append(trial.number)
        same = _same_as(trial, params)
        if same is not None:  # NSGA-II proposes a finished point again: reuse it
            trial.set_user_attr("same_as", same.number)
            trial.set_user_attr("figures", same.user_attrs["figures"])
            trial.set_user_attr("pack", same.user_attrs.get("pack", ""))
            self._say(trial.number, params, f"same as trial {same.number}")
            self.current = None
            return list(same.values)
        pack = self.trials_dir / f"trial-{trial.number}.edgepack"
        try:
            # InputError here: a combination of knobs the recipe refuses. One from run_recipe
            # (an unreadable model or data file) ends the search instead: every trial would.
            recipe = trial_recipe(self.recipe, params, self.budget, pack)
        except InputError as exc:
            return self._prune(trial, params, pack, exc)
        try:
            run_recipe(recipe, progress=False)
        except QuantizationError as exc:  # BudgetError: a stage broke the budget, the later
            return self._prune(trial, params, pack, exc)  # stages never ran
        figures = pack_figures(pack, self.profiles)
        trial.set_user_attr("figures", [dataclasses.asdict(f) for f in figures])
        trial.set_user_attr("pack", str(pack))
        described = ", ".join(
            f"{f.profile} {f.latency_ms:.3f} ms ({f.latency_kind})" for f in figures
        )
        accuracy = min(f.accuracy for f in figures)
        self._say(trial.number, params, f"accuracy {accuracy:.2f}, {described}")
        self.current = None
        return [accuracy, *(f.latency_ms for f in figures), max(f.size_bytes for f in figures)]

    def _prune(
        self, trial: optuna.Trial, params: Mapping[str, Any], pack: Path, exc: Exception
    ) -> NoReturn:
        import optuna

        note = str(exc).splitlines()[0]
        trial.set_user_attr("note", note)
        pack.unlink(missing_ok=True)  # the stages before the stop: not a candidate
        self._say(trial.number, params, f"pruned: {note}")
        self.current = None
        raise optuna.TrialPruned(note)

    def _say(self, number: int, params: Mapping[str, Any], what: str) -> None:
        print(f"trial {number} [{self.worker}] {_params(params)}: {what}", flush=True)

    def requeue_current(self, study: optuna.Study) -> None:
        """After Ctrl-C: Optuna has marked the running trial failed; queue it again so the
        next run (or another worker) redoes it, as the heartbeat does for a killed worker."""
        if self.current is None:
            return
        import optuna

        trial = study._storage.get_trial(self.current)
        if trial.state == optuna.trial.TrialState.FAIL:
            optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)


def _same_as(trial: optuna.Trial, params: Mapping[str, Any]) -> Any:
    import optuna

    wanted = trial.params
    for other in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if other.params == wanted and "figures" in other.user_attrs:
            return other
    return None


def study_rows(study: optuna.Study, profiles: Sequence[str]) -> list[TrialRow]:
    """Every complete or pruned trial of the study, from any worker."""
    import optuna

    rows = []
    for trial in study.get_trials(deepcopy=False):
        decoded = {k: _decode(v) for k, v in trial.params.items()}
        worker = trial.user_attrs.get("worker", "")
        if trial.state == optuna.trial.TrialState.COMPLETE and "figures" in trial.user_attrs:
            figures = {f["profile"]: ProfileFigures(**f) for f in trial.user_attrs["figures"]}
            if set(profiles) <= set(figures):
                rows.append(
                    TrialRow(trial.number, decoded, figures, worker=worker,
                             pack=trial.user_attrs.get("pack", ""))
                )  # fmt: skip
        elif trial.state == optuna.trial.TrialState.PRUNED:
            note = trial.user_attrs.get("note", "pruned")
            rows.append(TrialRow(trial.number, decoded, {}, "pruned", note, worker))
    return rows


def summarize(
    study: optuna.Study,
    profiles: Sequence[str],
    budget: float,
    url: str,
    output: Path,
    recipe: Recipe,
    *,
    report: bool = True,
    ran: Sequence[int] = (),
) -> SearchResult:
    """Fronts and winners from the whole study; the winners written as packs (copied from
    this machine's trial, or rebuilt from the trial's knobs when another worker ran it)."""
    rows = study_rows(study, profiles)
    result = SearchResult(study.study_name, safe_url(url), budget, list(profiles), rows)
    result.ran = list(ran)
    for profile in profiles:
        front = pareto_front(rows, profile)
        result.fronts[profile] = front
        if front:
            result.best[profile] = front[0]
            result.packs[profile] = _write_winner(front[0], recipe, budget, output, profile)
    if report:
        result.report = write_report(result, output)
    return result


def _write_winner(row: TrialRow, recipe: Recipe, budget: float, output: Path, profile: str):
    """OUTPUT/<profile>.edgepack: a copy of this machine's trial pack, or the trial rebuilt
    from its knobs when another worker ran it; written beside the target, then renamed."""
    target = output / f"{profile}.edgepack"
    source = Path(row.pack) if row.pack else None
    if source is not None and source.is_file():
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        from .recipe import run_recipe

        run_recipe(trial_recipe(recipe, row.params, budget, target), progress=False)
    return target


# --- The report ------------------------------------------------------------------------------


def write_report(result: SearchResult, output: Path) -> Path:
    """OUTPUT/search.md (the tables), search.json (every row) and, with matplotlib, one
    accuracy-vs-latency plot per profile with the front and the budget line."""
    lines = [f"# Search {result.study}", "", f"storage: {result.storage}", ""]
    lines.append(
        f"{sum(r.state == 'complete' for r in result.rows)} complete and "
        f"{sum(r.state == 'pruned' for r in result.rows)} pruned trial(s), budget "
        f"{result.budget:g} points below the source"
    )
    for profile in result.profiles:
        lines += ["", f"## {profile}", "", "```", result.table(profile), "```"]
        if profile in result.packs:
            best = result.best[profile]
            lines.append(
                f"fastest within budget: trial {best.number}, {result.packs[profile].name}"
            )
        plot = _plot(result, profile, output)
        if plot is not None:
            lines += ["", f"![{profile}]({plot.name})"]
    md = output / "search.md"
    _write_text(md, "\n".join(lines) + "\n")
    data = {
        "study": result.study,
        "storage": result.storage,
        "budget": result.budget,
        "profiles": result.profiles,
        "trials": [
            {**dataclasses.asdict(r), "figures": {k: dataclasses.asdict(v) for k, v in
                                                 r.figures.items()}}
            for r in result.rows
        ],
        "fronts": {p: [r.number for r in f] for p, f in result.fronts.items()},
        "best": {p: {"trial": r.number, "pack": str(result.packs[p])}
                 for p, r in result.best.items()},
    }  # fmt: skip
    _write_text(output / "search.json", json.dumps(data, indent=2, default=str) + "\n")
    return md


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def _plot(result: SearchResult, profile: str, output: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [r for r in result.rows if r.state == "complete"]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(
        [r.figures[profile].latency_ms for r in done],
        [r.figures[profile].accuracy for r in done],
        color="0.7", label="trials",
    )  # fmt: skip
    front = result.fronts.get(profile, [])
    ax.plot(
        [r.figures[profile].latency_ms for r in front],
        [r.figures[profile].accuracy for r in front],
        "o-", color="C0", label="Pareto front",
    )  # fmt: skip
    first = done[0].figures[profile]
    ax.axhline(first.accuracy + first.drop - result.budget, color="C3", ls="--", label="budget")
    kind = first.latency_kind
    ax.set_xlabel(f"latency on {profile}, ms ({kind})")
    ax.set_ylabel("accuracy")
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)
    ax.set_title(f"{result.study}: accuracy vs latency on {profile}")
    ax.legend()
    path = output / f"search-{profile}.png"
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
