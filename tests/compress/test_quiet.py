"""quiet(): third-party output (Python and C level) goes to the log, edgepack's own lines and tqdm
bars stay on the terminal, and a failure shows the log's last lines and its path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("tqdm")

from edgepack.compress.quiet import quiet

SCRIPT = """
import logging, os, sys, warnings
from tqdm import tqdm
from edgepack.compress.quiet import quiet, terminal

with quiet(sys.argv[1]) as term:
    print("[START] LiteRT-Torch Convert")  # a library's print
    os.write(2, b"I0000 absl C-level line\\n")  # a C library's stderr
    warnings.warn("TracerWarning: converting a tensor")
    logging.warning("Please consider pre-processing")  # as onnxruntime's quantizer does
    term.say("[1/1] edgepack's own line")
    print("edgepack's candidate table", file=terminal().err)  # from code without the Console
    for _ in tqdm(range(3), desc="edgepack bar"):
        pass
print("after")
"""


def test_third_party_output_goes_to_the_log(tmp_path):
    """In a process of its own, as a user runs it: pytest captures warnings and logging itself."""
    log = tmp_path / "logs" / "step.log"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "[1/1] edgepack's own line" in result.stdout
    assert "edgepack bar" in result.stderr
    assert "edgepack's candidate table" in result.stderr
    assert result.stdout.rstrip().endswith("after")  # the terminal is back
    for word in ("[START]", "absl", "TracerWarning", "Please consider pre-processing"):
        assert word not in result.stdout + result.stderr
        assert word in log.read_text()


def test_failure_shows_the_log_tail_and_path(tmp_path, capfd):
    log = tmp_path / "fail.log"
    with pytest.raises(RuntimeError), quiet(log):
        sys.stderr.write("onnxruntime: Invalid model: node Conv_3 has no input\n")
        raise RuntimeError("export failed")
    _, err = capfd.readouterr()
    assert "node Conv_3 has no input" in err
    assert str(log) in err


def test_verbose_redirects_nothing(tmp_path, capfd):
    with quiet(tmp_path / "v.log", verbose=True):
        os.write(2, b"absl visible\n")
    assert "absl visible" in capfd.readouterr().err
    assert not (tmp_path / "v.log").exists()
