"""Archives: every corrupt byte, truncation, duplicate, bomb or flag is a clean IntegrityError
family error naming the archive; loading stays linear in the number of listed files."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import attacks

ARCHIVES = ["image", "image-deflated", "text"]


def _clean_or_unused(outcome: tuple[str, str], archive: str) -> None:
    kind, detail = outcome
    assert kind in ("clean", "silent"), detail
    if kind == "clean" and "IntegrityError" in detail:
        assert archive in detail, f"the error does not name the archive: {detail}"


def test_every_byte_of_the_manifest_entry_flipped(bench):
    for position in attacks.manifest_span(bench.packs["image"]):
        outcome = attacks.archive_flip(bench, "image", position, position % 8)
        _clean_or_unused(outcome, "image.edgepack")


@settings(settings.get_profile("attack"), max_examples=150)
@given(name=st.sampled_from(ARCHIVES), position=st.integers(0, 1 << 16), bit=st.integers(0, 7))
def test_a_bit_flipped_anywhere_in_an_archive(bench, name, position, bit):
    _clean_or_unused(attacks.archive_flip(bench, name, position, bit), f"{name}.edgepack")


@settings(settings.get_profile("attack"), max_examples=60)
@given(name=st.sampled_from(ARCHIVES), length=st.integers(0, 1 << 16))
def test_a_truncated_archive(bench, name, length):
    kind, detail = attacks.truncated(bench, name, length)
    assert kind == "clean", detail


@pytest.mark.parametrize("kind", attacks.DUPLICATES.values(), ids=list(attacks.DUPLICATES))
def test_duplicate_entry_names_are_refused(bench, kind):
    outcome, detail = attacks.duplicate_entry(bench, kind)
    assert outcome == "clean" and "more than once" in detail, detail


@pytest.mark.parametrize("name", ARCHIVES)
@pytest.mark.parametrize("entry", range(3))
def test_encrypted_flag_is_refused(bench, name, entry):
    outcome, detail = attacks.encrypted(bench, name, entry)
    assert outcome == "clean" and "encrypted" in detail, detail


@pytest.mark.parametrize("kind", ["asset", "manifest"])
def test_bombs_are_refused_before_they_are_read(bench, kind):
    outcome, detail = attacks.bomb(bench, kind)
    assert outcome == "clean", detail


def test_load_is_linear_in_the_number_of_listed_files(bench):
    small = attacks.load_calls(attacks.many_files_pack(bench, 500))
    large = attacks.load_calls(attacks.many_files_pack(bench, 2000))
    assert large / small < 4.5, f"4x the files cost {large / small:.1f}x the calls"
