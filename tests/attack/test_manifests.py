"""Every malformed manifest is a clean ManifestError naming the field, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from . import attacks, craft


@pytest.mark.parametrize("case", attacks.MALFORMED)
def test_malformed_manifest_is_refused_naming_the_field(bench, case):
    with craft.memory_cap():
        outcome, detail = attacks.malformed(bench, case)
    assert outcome == "clean", detail
    assert attacks.MALFORMED[case][2] in detail, detail


def test_every_byte_of_a_directory_manifest_flipped(bench):
    size = (bench.packs["image-dir"] / "manifest.json").stat().st_size
    for position in range(size):
        outcome, detail = attacks.directory_manifest_flip(bench, position, position % 8)
        assert outcome in ("clean", "silent"), (position, detail)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(settings.get_profile("attack"), max_examples=200)
@given(
    path=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    value=st.sampled_from(attacks.HOSTILE_VALUES) | json_values,
    delete=st.booleans(),
)
def test_fuzzed_manifest_with_consistent_hashes_never_crashes(bench, path, value, delete):
    with craft.memory_cap():
        outcome, detail = attacks.fuzzed_manifest(bench, path, value, delete)
    assert outcome != "crash", detail
