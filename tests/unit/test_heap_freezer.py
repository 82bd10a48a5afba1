"""HeapFreezer: freezes as the population grows, unfreezes when it halves."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stockctl.runtime.process import HeapFreezer


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_growth_by_a_step_freezes_the_heap() -> None:
    # Arrange
    heap = HeapFreezer(step=100)
    survivors = [object() for _ in range(10)] + [[i] for i in range(10)]  # tracked containers

    # Act
    heap.update(150)

    # Assert
    assert gc.get_freeze_count() > 0 and heap.frozen_at == 150 and heap.freezes == 1
    assert survivors


def test_small_growth_does_not_freeze_again() -> None:
    # Arrange
    heap = HeapFreezer(step=100)
    heap.update(100)

    # Act
    heap.update(150)

    # Assert
    assert heap.freezes == 1 and heap.frozen_at == 100


def test_halving_the_population_unfreezes_so_cycles_can_be_collected() -> None:
    # Arrange
    heap = HeapFreezer(step=100)
    heap.update(1000)

    # Act
    heap.update(400)

    # Assert
    assert gc.get_freeze_count() == 0 and heap.frozen_at == 400
