"""Search: the [search] table, trials shared by worker processes through SQLite and a real
PostgreSQL server, resuming after kill -9 and Ctrl-C, and bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import edgepack.runtime as ep
from edgepack.cli.main import main
from edgepack.compress.recipe import Recipe, get_option
from tests.conftest import classifier_onnx, require

PG_BIN = Path(os.environ.get("EDGEPACK_PG_BIN", "/usr/lib/postgresql/15/bin"))  # .ci/run sets it
PG_USER = "edgepack-pg"  # postgres refuses to run as root: the throwaway cluster runs as this
TRIAL_LINE = re.compile(r"^trial (\d+) \[([^\]]+)\]", re.M)

RECIPE = """
name = "tiny"
output = "tiny.edgepack"
source = "clf.onnx"

[data]
calibration = "data.npz"
evaluation = "data.npz"

[[stages]]
type = "quantize"
min_speedup = 0

[search]
"stages.quantize.method" = ["static", "dynamic"]
"stages.quantize.calibration_samples" = {low = 16, high = 256}
"""


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A recipe of a tiny ONNX classifier whose trials take about a second: quantize knobs."""
    require("optuna")
    reference = classifier_onnx(tmp_path / "clf.onnx", input_shape=(16,), classes=4)
    x = np.random.default_rng(3).normal(size=(2000, 16)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, labels=reference(x).argmax(1))
    path = tmp_path / "tiny.toml"
    path.write_text(RECIPE)
    return path


def search_command(
    recipe: Path, storage: str, output: Path, trials: int, heartbeat: int = 10
) -> list:
    """The worker's command line. The heartbeat is short only where a test waits for a dead
    worker's trial to go stale: on a loaded machine a live worker can miss a 1 s beat."""
    return [
        sys.executable, "-m", "edgepack.cli.main", "search", str(recipe), "--profile", "rpi5",
        "--budget", "3", "--trials", str(trials), "--storage", storage, "--study", "tiny",
        "--heartbeat", str(heartbeat), "-o", str(output),
    ]  # fmt: skip


def start(command: list, log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def finish(worker: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    worker.wait(timeout=timeout)
    text = log.read_text()
    assert worker.returncode == 0, text
    return text


def trials_run(text: str) -> set[int]:
    return {int(n) for n, _ in TRIAL_LINE.findall(text)}


def load_study(storage: str):
    import optuna

    return optuna.load_study(study_name="tiny", storage=storage)


def check_two_workers(recipe: Path, storage: str, tmp_path: Path, trials: int = 8) -> None:
    """Two worker processes on one study: each trial run by exactly one of them, both ran
    some, and together they ran every trial the study holds."""
    import optuna

    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [
        start(search_command(recipe, storage, tmp_path / f"out-{i}", trials), log)
        for i, log in enumerate(logs)
    ]
    texts = [finish(w, log) for w, log in zip(workers, logs, strict=True)]
    ran_a, ran_b = (trials_run(t) for t in texts)
    assert ran_a and ran_b, texts  # the study was shared: both workers got trials
    assert not ran_a & ran_b  # no trial was run twice
    study = load_study(storage)
    finished = [
        t
        for t in study.trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert ran_a | ran_b == {t.number for t in study.trials} == {t.number for t in finished}
    assert len(finished) >= trials
    workers_seen = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers_seen) == 2
    # each worker's summary reads the whole study: both name the same fastest trial
    best = [re.search(r"^rpi5: (\S+) \(", t, re.M) for t in texts]
    assert all(best), texts
    for i in range(2):
        pack = tmp_path / f"out-{i}" / "rpi5.edgepack"
        assert ep.verify_pack(pack).models[0].path == "model.int8.onnx"
    # the summaries read the whole study: the one read last lists both workers' trials, and
    # between them they list every trial. (Not "the last file written lists all": a worker
    # reads the study, then may rebuild a winner the other ran while the other finishes one more.)
    listed = [
        {
            t["number"]
            for t in json.loads((tmp_path / f"out-{i}" / "search.json").read_text())["trials"]
        }
        for i in range(2)
    ]
    assert any(names & ran_a and names & ran_b for names in listed), listed
    assert listed[0] | listed[1] == {t.number for t in finished}


def test_two_workers_share_one_sqlite_study(recipe, tmp_path):
    check_two_workers(recipe, f"sqlite:///{tmp_path / 'study.db'}", tmp_path)


# --- PostgreSQL: a throwaway cluster in a temp dir -------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_pg_user(command: list) -> list:
    """Run as PG_USER when we are root (created as a system user if absent)."""
    if os.geteuid() != 0:
        return command
    if subprocess.run(["id", PG_USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
        )
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--clear-groups", *command]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL 15 server on 127.0.0.1 in a temp dir with password auth, database 'study';
    yields its URL with the password. Never touches a system cluster; stopped at the end."""
    if not (PG_BIN / "initdb").is_file():
        if os.environ.get("EDGEPACK_REQUIRE_ALL") == "1":
            pytest.fail(f"PostgreSQL 15 is required in CI: no {PG_BIN / 'initdb'}")
        pytest.skip("PostgreSQL 15 binaries are not installed")
    require("psycopg")
    root = Path(tempfile.mkdtemp(prefix="edgepack-pg-"))
    root.chmod(0o755)
    (root / "pw").write_text("s3cret-pw\n")
    if os.geteuid() == 0:
        _as_pg_user(["true"])  # creates the user
        shutil.chown(root, PG_USER, PG_USER)
        shutil.chown(root / "pw", PG_USER, PG_USER)
    data, port = root / "data", _free_port()
    subprocess.run(
        _as_pg_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "edgepack",
                     "--auth=scram-sha-256", f"--pwfile={root / 'pw'}", "--no-sync"]),
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options,
                     "-l", str(root / "server.log"), "-w", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="edgepack", password="s3cret-pw", dbname="postgres",
            autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute("CREATE DATABASE study")
        yield f"postgresql+psycopg://edgepack:s3cret-pw@127.0.0.1:{port}/study"
    finally:
        subprocess.run(
            _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(recipe, tmp_path, postgres):
    check_two_workers(recipe, postgres, tmp_path)


# --- Resuming ----------------------------------------------------------------------------------


def _trials(storage: str) -> list:
    try:
        return load_study(storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


def _stop_mid_trial(command: list, log: Path, storage: str, sig: int) -> int:
    """Start a worker, wait until the study has two finished trials and the worker is inside its
    own code of another (it tags a trial with its name right after choosing the knobs), send
    `sig`; return the number of the trial the signal stopped. That is the one running when the
    signal landed, which on a loaded machine can be a later one than was running when it was
    sent (a trial lasts about a second): a SIGKILL leaves it running, a Ctrl-C marks it failed.
    A signal that lands between two trials stops none; the next attempt counts the trials the
    study has already finished, so it has trials left to catch."""
    import optuna

    running, finished = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE
    stopped_states = (running, optuna.trial.TrialState.FAIL)
    for _ in range(5):
        worker = start(command, log)
        mine = f"{socket.gethostname()}:{worker.pid}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and worker.poll() is None:
            trials = _trials(storage)
            done = sum(t.state == finished for t in trials)
            if done >= 2 and any(
                t.state == running and t.user_attrs.get("worker") == mine for t in trials
            ):
                worker.send_signal(sig)
                worker.wait(timeout=120)
                stopped = [
                    t.number
                    for t in load_study(storage).trials
                    if t.state in stopped_states and t.user_attrs.get("worker") == mine
                ]
                if stopped:
                    return stopped[-1]
                break  # it landed between two trials: try again
            time.sleep(0.02)
        worker.kill()
        worker.wait()
    raise AssertionError("could not stop the worker while a trial was running")


def _finished(storage: str) -> dict[int, tuple]:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return {
        t.number: (t.state, t.values, t.params)
        for t in load_study(storage).get_trials(states=states)
    }


def test_kill_9_then_rerun_continues_the_study_and_redoes_the_killed_trial(recipe, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = search_command(recipe, storage, tmp_path / "out", 6, heartbeat=1)
    killed = _stop_mid_trial(command, tmp_path / "first.log", storage, signal.SIGKILL)
    before = _finished(storage)
    assert before and killed not in before
    time.sleep(2.5)  # past the heartbeat's grace period (2 x 1 s): the trial is stale
    finish(start(command, tmp_path / "second.log"), tmp_path / "second.log")
    study = load_study(storage)
    after = _finished(storage)
    assert {n: after[n] for n in before} == before  # no completed trial was lost or changed
    assert study.trials[killed].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].number in after  # redone, once
    assert retries[0].params == study.trials[killed].params
    assert len(after) >= 6


def test_ctrl_c_then_rerun_redoes_the_interrupted_trial(recipe, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = search_command(recipe, storage, tmp_path / "out", 5)
    stopped = _stop_mid_trial(command, tmp_path / "first.log", storage, signal.SIGINT)
    assert "interrupted" in (tmp_path / "first.log").read_text()
    before = _finished(storage)
    finish(start(command, tmp_path / "second.log"), tmp_path / "second.log")
    study = load_study(storage)
    assert study.trials[stopped].state == optuna.trial.TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == stopped]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    after = _finished(storage)
    assert {n: after[n] for n in before} == before


def test_a_ctrl_c_outside_a_trials_own_code_is_held_until_optuna_is_done(recipe, tmp_path):
    """optuna 5.0 turns a KeyboardInterrupt inside its bookkeeping into an UnboundLocalError and
    leaves the trial running, so the search's SIGINT handler raises only inside a trial's own
    code and holds the signal otherwise, until stop_if_interrupted (an Optuna callback)."""
    from edgepack.compress.search import _Objective

    objective = _Objective(Recipe.load(recipe), [], [], 3.0, tmp_path, "test")
    previous = signal.signal(signal.SIGINT, objective.on_ctrl_c)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # Optuna's turn: held
        assert objective.interrupted
        with pytest.raises(KeyboardInterrupt):
            objective.stop_if_interrupted()
        objective.interrupted, objective.running = False, True
        with pytest.raises(KeyboardInterrupt):  # a trial's own code: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs between bytecodes; it raises well before this ends
    finally:
        signal.signal(signal.SIGINT, previous)


# --- The [search] table and bad input -----------------------------------------------------------


def test_the_search_table_is_parsed_checked_and_written_back(recipe, tmp_path):
    from edgepack.compress.search import parse_space, trial_recipe

    loaded = Recipe.load(recipe)
    knobs = parse_space(loaded.search, loaded)
    assert [k.path for k in knobs] == [
        "stages.quantize.method",
        "stages.quantize.calibration_samples",
    ]
    assert knobs[0].choices == ("static", "dynamic") and knobs[1].is_int
    again = tmp_path / "again.toml"
    again.write_text(loaded.to_toml())
    assert Recipe.load(again).search == loaded.search
    # unquoted dotted keys are nested TOML tables: they read the same
    nested = recipe.read_text().replace('"stages.quantize.method"', "stages.quantize.method")
    (tmp_path / "nested.toml").write_text(nested)
    assert Recipe.load(tmp_path / "nested.toml").search == {
        "stages": {"quantize": {"method": ["static", "dynamic"]}},
        "stages.quantize.calibration_samples": {"low": 16, "high": 256},
    }
    trial = trial_recipe(loaded, {"stages.quantize.method": "dynamic"}, 2.0, tmp_path / "t")
    assert get_option(trial, "stages.quantize.method") == "dynamic"
    assert trial.budget == 2.0 and trial.search is None


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (
            '"stages.quantize.calibration_samples" = {low = 64, high = 16}',
            r"'stages.quantize.calibration_samples'.*low=64 .. high=16 is empty",
        ),
        ('"stages.quantize.methd" = ["static"]', r"unknown key 'methd'; did you mean 'method'"),
        ('"stages.quantise.method" = ["static"]', r"no 'quantise' stage; did you mean 'quantize'"),
        ('"stages.quantize.method" = []', "empty list of choices"),
        ('"stages.quantize.method" = ["static", "fast"]', "unknown quantization method 'fast'"),
        ('"stages.quantize.calibration_samples" = {low = 1, hi = 5}', "did you mean 'high'"),
    ],
)
def test_a_bad_search_space_fails_before_any_trial(recipe, tmp_path, capsys, search, message):
    text = recipe.read_text().split("[search]")[0] + "[search]\n" + search + "\n"
    recipe.write_text(text)
    with pytest.raises(ep.InputError, match=message):
        Recipe.load(recipe)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["search", str(recipe), "--profile", "rpi5", "--storage", storage]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0])
    assert not (tmp_path / "study.db").exists()  # nothing ran, nothing was created


def test_an_unreachable_storage_is_named_without_its_password(recipe, tmp_path, capsys):
    require("psycopg")
    url = f"postgresql+psycopg://edgepack:hunter2@127.0.0.1:{_free_port()}/study"
    rc = main(
        ["search", str(recipe), "--profile", "rpi5", "--budget", "3", "--storage", url,
         "-o", str(tmp_path)]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "hunter2" not in err[0] and "edgepack:***@127.0.0.1" in err[0]
    assert "check that the server is running" in err[0]


def test_an_unknown_profile_and_a_missing_budget_are_refused(recipe, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["search", str(recipe), "--profile", "rpi6", "--storage", storage]) == 1
    assert "known profiles: " in capsys.readouterr().err
    assert main(["search", str(recipe), "--profile", "rpi5", "--storage", storage]) == 1
    assert "a search needs a budget" in capsys.readouterr().err


def test_a_study_is_not_continued_with_other_profiles(recipe, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = ["search", str(recipe), "--budget", "3", "--trials", "1", "--storage", storage,
            "-o", str(tmp_path / "out")]  # fmt: skip
    assert main([*base, "--profile", "rpi5"]) == 0
    capsys.readouterr()
    assert main([*base, "--profile", "rpi4-1.5ghz"]) == 1
    assert "was started with other profiles" in capsys.readouterr().err


def test_an_unreadable_model_ends_the_search_in_one_line(recipe, tmp_path, capsys):
    (tmp_path / "clf.onnx").unlink()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    rc = main(
        ["search", str(recipe), "--profile", "rpi5", "--budget", "3", "--storage", storage,
         "-o", str(tmp_path / "out")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "clf.onnx" in err[0] and "neither an .onnx file" in err[0]
