"""The CLI: exit 2 for usage, 1 for a refused input, one line on stderr, a traceback only with
--debug; -o everywhere an output is written."""

from __future__ import annotations

import pytest

from edgepack.cli.main import build_parser

from . import attacks, craft


def test_bad_inputs(bench):
    for name, (argv, code) in attacks.cli_cases(bench).items():
        outcome, detail = craft.judge_cli(argv, code)
        assert outcome == "clean", f"{name}: {detail}"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("run --text on an image pack", "takes images"),
        ("run --image on a text pack", "takes text"),
        ("run --npy of a pickled array", "pickle"),
        ("pack --labels naming a missing file", "nosuch_labels.txt"),
    ],
)
def test_messages_say_what_was_expected(bench, name, words):
    argv, _code = attacks.cli_cases(bench)[name]
    assert words in craft.run_cli(argv)[2]


def test_debug_shows_the_traceback(bench):
    argv, _ = attacks.cli_cases(bench)["info on a corrupted archive"]
    code, _, err = craft.run_cli(["--debug", *argv])
    assert code == -1 or "Traceback" in err


def test_every_output_option_takes_o():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    for name, command in commands.items():
        for action in command._actions:
            if "--output" in action.option_strings:
                assert "-o" in action.option_strings, f"edgepack {name} has --output but no -o"
    assert parser.parse_args(["demo", "-o", "x"]).output == "x"
