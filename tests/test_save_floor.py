"""The save-floor benchmark measures real saves: every one lands, on each schema variant."""

from __future__ import annotations

import pytest

from benchmarks.save_floor import VARIANTS, measure


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_stores_every_response_and_counts_what_it_wrote(name: str) -> None:
    found = measure(VARIANTS[name], n=60, group=4)  # raises unless all 60 responses are there
    assert found["bytes"] > 0
    assert found["user_us"] >= 0 and found["sys_us"] >= 0
