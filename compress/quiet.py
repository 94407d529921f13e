"""Keep third-party chatter out of the user's terminal: inside `quiet(log)` everything written to
file descriptors 1 and 2 (Python's print, warnings and logging, and C libraries: absl, TensorFlow,
LiteRT-Torch's [START]/[DONE] lines, onnxruntime's quantizer) goes to the log file, while
edgepack's own lines (`console.say`) and progress bars stay on the real terminal.

>>> with quiet("out/logs/compress.log") as console:  # doctest: +SKIP
...     console.say("[2/6] compressing")
...     run_recipe(recipe)  # its tqdm bars show; absl and torch warnings go to the log

On an exception the last lines of the log are printed with its path, so a third-party error is
never hidden. verbose=True changes nothing: all output shows, as without the context.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

PathLike = str | os.PathLike[str]
TAIL_LINES = 15  # lines of the log shown when the work inside fails


@dataclass
class Console:
    """The real terminal while third-party output goes to a log: `out` (stdout), `err` (stderr,
    where progress bars go) and the log path (None when nothing is redirected)."""

    out: TextIO
    err: TextIO
    log: Path | None = None

    def say(self, line: str = "") -> None:
        """One of edgepack's own lines, on the real stdout."""
        print(line, file=self.out, flush=True)


def cached_log(name: str) -> Path:
    """A fresh log file for a command that has no output folder of its own (quantize): under
    the user's cache (~/.cache/edgepack/logs), replaced by the next run of the same name."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if int(os.environ.get("RANK", "0")):  # a torchrun rank: its own file
        name = f"{name}.rank{os.environ['RANK']}"
    log = root / "edgepack" / "logs" / name
    log.unlink(missing_ok=True)
    return log


def console() -> Console:
    """The terminal as it is now, outside any quiet() (for verbose runs and tests)."""
    return Console(sys.stdout, sys.stderr)


_active: list[Console] = []  # the real terminal of each quiet() now running, innermost last


def terminal() -> Console:
    """The user's terminal even inside quiet(): where edgepack's own tables and messages go
    from code that does not hold the Console (a recipe stage's candidate table)."""
    return _active[-1] if _active else console()


def _flush_c_stdio() -> None:
    """C libraries buffer their stdout; flush it before a descriptor changes under them."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def quiet(log: PathLike | None, *, verbose: bool = False) -> Iterator[Console]:
    """Send fd 1 and 2 to `log` (appended) for the duration; yield the real terminal.

    log None or verbose: nothing is redirected. tqdm bars made inside (whose default stream is
    sys.stderr, now the log) are drawn on the real stderr instead.
    """
    if log is None or verbose:
        yield console()
        return
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _flush_c_stdio()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    out = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    term = Console(out, err, path)
    failed = False
    with open(path, "ab", buffering=0) as sink:
        for fd in (1, 2):
            os.dup2(sink.fileno(), fd)
        _active.append(term)
        try:
            with _bars_on(err):
                yield term
        except BaseException:
            failed = True
            raise
        finally:
            _active.remove(term)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            _flush_c_stdio()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            if failed:
                _show_tail(path, err)
            out.close()
            err.close()


@contextlib.contextmanager
def _bars_on(stream: TextIO) -> Iterator[None]:
    """tqdm bars made inside default to `stream` (an explicit file= still wins)."""
    try:
        from tqdm import std
    except ImportError:  # pragma: no cover - tqdm comes with the compress extra
        yield
        return
    original = std.tqdm.__init__
    std.tqdm.__init__ = functools.partialmethod(original, file=stream)  # type: ignore[method-assign]
    try:
        yield
    finally:
        std.tqdm.__init__ = original  # type: ignore[method-assign]


def _show_tail(path: Path, err: TextIO) -> None:
    try:
        lines = [line for line in path.read_text("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    if lines:
        print(f"last lines of {path}:", file=err)
        for line in lines[-TAIL_LINES:]:
            print(f"  | {line[:300]}", file=err)
    print(f"full third-party output: {path} (rerun with -v to see it as it happens)", file=err)
    err.flush()
