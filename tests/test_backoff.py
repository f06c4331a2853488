"""Backoff after server errors and timeouts, over many draws: it grows, is capped, is jittered."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator

import pytest

from app.pull.state import SyncPolicy, backoff_seconds

DRAWS = 400
POLICY = SyncPolicy(window=5.0, backoff_max=900.0)


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Reproducible draws from the module's random generator, restored afterwards."""
    state = random.getstate()
    random.seed(20_26)
    yield
    random.setstate(state)


def draws(failures: int, policy: SyncPolicy = POLICY) -> list[float]:
    return [backoff_seconds(failures, policy) for _ in range(DRAWS)]


def ceiling(failures: int, policy: SyncPolicy = POLICY) -> float:
    """window · 2^(failures−1), capped at backoff_max."""
    return min(policy.backoff_max, policy.window * 2 ** (failures - 1))


@pytest.mark.parametrize("failures", range(1, 16))
def test_every_draw_is_between_the_window_and_the_capped_ceiling(failures: int) -> None:
    values = draws(failures)
    assert min(values) >= POLICY.window
    assert max(values) <= ceiling(failures)


def test_the_backoff_grows_with_the_failures_until_the_cap() -> None:
    means = [statistics.fmean(draws(f)) for f in range(1, 12)]
    # Full jitter: uniform over [window, ceiling], so the mean is halfway (within 10 %).
    for failures, mean in enumerate(means, start=1):
        expected = (POLICY.window + ceiling(failures)) / 2
        assert abs(mean - expected) <= 0.1 * expected, (failures, mean, expected)
    growing = means[:9]  # 5·2^8 = 1280 > 900: capped from the 9th failure on
    assert growing == sorted(growing) and growing[-1] > 50 * growing[0]
    assert max(draws(30)) > 0.9 * POLICY.backoff_max  # the cap is reached, not just approached


def test_draws_are_spread_not_constant() -> None:
    """Two pullers failing together must not retry together: the draws cover the range."""
    for failures in (2, 5, 10):
        values = draws(failures)
        low, high = POLICY.window, ceiling(failures)
        assert len(set(values)) > DRAWS * 0.9
        assert statistics.pstdev(values) > 0.2 * (high - low)  # uniform: 0.29 of the range


def test_a_huge_failure_count_stays_capped_and_finite() -> None:
    assert max(draws(10_000)) <= POLICY.backoff_max
    assert backoff_seconds(0, POLICY) == POLICY.window  # no failure yet: one window
