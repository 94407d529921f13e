"""run() and predict() refuse bad inputs with an InputError that says what was wrong."""

from __future__ import annotations

import pytest

from . import attacks, craft


@pytest.mark.parametrize("case", attacks.INPUTS)
def test_bad_input_is_a_clean_error(bench, case):
    with craft.memory_cap():
        outcome, detail = attacks.bad_input(bench, case)
    assert outcome == "clean", detail
