"""The README's commands are the ones CI runs, and the docs name files that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_main_job_and_test_commands():
    main_job, tests = readme_commands()
    assert main_job.endswith("edgepack demo")
    assert "pytest" in tests
    assert "-c constraints.txt" in main_job and "-c constraints.txt" in tests


def test_ci_runs_the_readme_test_command():
    assert readme_commands()[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_constraints_pin_the_cpu_torch():
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()


def test_linked_docs_exist():
    for doc in ("README.md", "docs/pack-format.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", (ROOT / doc).read_text()):
            if not target.startswith("http"):
                assert (ROOT / doc).parent.joinpath(target).exists(), f"{doc} links {target}"
