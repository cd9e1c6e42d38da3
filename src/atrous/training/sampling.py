"""Deterministic data order and augmentation: every random draw is a function of its coordinates.

* :class:`EpochShardSampler` shuffles with a permutation derived from ``(seed, epoch)`` and deals
  it out to the DDP ranks (``rank::world_size``). Validation is split the same way without
  shuffling and without the padding torch's ``DistributedSampler`` adds, so metrics reduced
  over 2 processes equal those of 1.
* :class:`SeededItems` seeds each training sample's augmentation from ``(seed, epoch, index)``
  inside the loading process (main process or worker alike).

With the model's own randomness (dropout) reseeded per step (:class:`StepSeedCallback`), a run
resumed after a crash repeats the interrupted epoch exactly and ends where an uninterrupted run
does, whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integer coordinates (NumPy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class EpochShardSampler(Sampler):
    """Indices of one rank's share of an epoch; training items are ``(epoch, index)`` pairs.

    Args:
        length: dataset length.
        shuffle: shuffle with a permutation derived from ``(seed, epoch)`` (training).
        seed: the run's seed.
        rank, world_size: this process's share: positions ``rank, rank + world_size, ...``.
        drop_last: make all ranks' shares equally long (training under DDP must step together).
    """

    def __init__(self, length: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False) -> None:
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch."""
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            order = list(range(self.length))
        else:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.length, generator=generator).tolist()
        if self.drop_last:
            order = order[: self.length - self.length % self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator:
        order = self._order()
        return iter([(self.epoch, i) for i in order] if self.shuffle else order)

    def __len__(self) -> int:
        return len(self._order())


class SeededItems(Dataset):
    """Wraps a training dataset: item ``(epoch, index)`` is ``dataset[index]`` drawn with the
    augmentation seed ``(seed, epoch, index)`` (the caller's random state is left untouched)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, epoch, index))
            return self.dataset[index]
