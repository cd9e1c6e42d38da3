"""The LightningDataModule: datasets and loaders from the ``data`` section of a config (its
:class:`~atrous.data.spec.DataSpec`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from ..config import thaw
from ..data.base import ClassInfo, SegmentationDataset
from ..data.build import bootstrap, bounded_workers, build_dataset
from ..data.spec import DataSpec
from .sampling import EpochShardSampler, SeededItems

__all__ = ["SegmentationDataModule"]


class _DeferredIterator:
    """An iterator that creates the loader's iterator on the first ``next``."""

    def __init__(self, start: Callable[[], Iterator]) -> None:
        self._start, self._iterator = start, None

    def __iter__(self) -> _DeferredIterator:
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


class EpochDataLoader(DataLoader):
    """A DataLoader that draws its sampler's indices when the first batch is requested.

    With workers, ``iter(DataLoader)`` asks the sampler for its indices at once (to prefetch).
    Lightning creates the training iterator before it calls ``sampler.set_epoch`` — on resume it
    is the only iterator of the resumed epoch — so a plain loader with workers would replay the
    indices (and augmentation seeds) of the epoch the sampler held before. Deferring ``iter``
    to the first ``next`` makes the order and augmentation of every epoch a function of
    ``(seed, epoch)`` alone, for any number of workers.
    """

    def __iter__(self) -> Iterator:
        return _DeferredIterator(super().__iter__)


class SegmentationDataModule(L.LightningDataModule):
    """Builds the splits eagerly (so that layout errors surface before training starts)."""

    def __init__(self, cfg: DataSpec | Mapping[str, Any] | None, *, stages: tuple[str, ...] = ("train", "val"),
                 seed: int = 0) -> None:
        super().__init__()
        spec = cfg if isinstance(cfg, DataSpec) else DataSpec.from_mapping(cfg)
        self.seed = seed
        self.batch_size = spec.batch_size
        self.val_batch_size = spec.eval_batch_size
        self.num_workers = bounded_workers(spec.num_workers)
        self.splits: dict[str, SegmentationDataset] = {
            stage: build_dataset(thaw(spec.dataset), thaw(spec.split(stage)), train=stage == "train") for stage in stages
        }
        self.train_set: Dataset | None = None
        if "train" in self.splits:
            boot = spec.split("train").get("bootstrap")
            train_set = bootstrap(self.splits["train"], **thaw(boot)) if boot else self.splits["train"]
            self.train_set = SeededItems(train_set, seed)

    @property
    def classes(self) -> ClassInfo:
        return next(iter(self.splits.values())).classes

    def _loader(self, dataset: Dataset, batch_size: int, train: bool) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochShardSampler(len(dataset), shuffle=train, seed=self.seed, rank=rank, world_size=world, drop_last=train)
        return EpochDataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=train and len(sampler) > batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["val"], self.val_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits["test"], self.val_batch_size, False)
