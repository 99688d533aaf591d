"""Batches of the shapes dataset as torch tensors, drawn reproducibly from a seed.

Every batch is a fresh draw (the dataset is infinite). With ``workers > 0`` batches are drawn
in background processes by a ``torch.utils.data.DataLoader``; worker ``w`` draws from
``numpy.random.default_rng([seed, w])`` and the loader interleaves workers in a fixed order,
so a run is reproducible for a given (seed, workers).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nodeflow.training.palette import PALETTE, SHAPES, caption
from nodeflow.training.shapes import ShapeDataset

#: Every caption the dataset can produce, in a fixed order; index 0 is the empty caption that
#: classifier-free guidance training substitutes (Ho & Salimans 2022, "Classifier-Free
#: Diffusion Guidance").
ALL_CAPTIONS: tuple[str, ...] = ("",) + tuple(
    caption(shape, fg, bg)
    for shape, fg, bg in itertools.product(SHAPES, PALETTE, PALETTE)
    if fg != bg
)
_CAPTION_INDEX = {text: i for i, text in enumerate(ALL_CAPTIONS)}


@dataclass(frozen=True)
class TensorBatch:
    """A training batch."""

    images: torch.Tensor  # (B, 3, H, W) float32 in -1..1
    masks: torch.Tensor  # (B, 1, H, W) float32 in 0..1
    caption_ids: torch.Tensor  # (B,) int64 indices into ALL_CAPTIONS


def to_tensors(batch) -> TensorBatch:
    """Convert a ``ShapeBatch`` to tensors."""
    images = torch.from_numpy(batch.images).permute(0, 3, 1, 2) * 2 - 1  # (B, 3, H, W)
    masks = torch.from_numpy(batch.masks)[:, None]  # (B, 1, H, W)
    ids = torch.tensor([_CAPTION_INDEX[text] for text in batch.captions], dtype=torch.int64)
    return TensorBatch(images.contiguous(), masks.contiguous(), ids)


class _ShapeStream(IterableDataset):
    def __init__(self, dataset: ShapeDataset, seed: int, batch_size: int) -> None:
        self.dataset, self.seed, self.batch_size = dataset, seed, batch_size

    def __iter__(self) -> Iterator[TensorBatch]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            yield to_tensors(self.dataset.sample(rng, self.batch_size))


def batches(
    dataset: ShapeDataset, seed: int, batch_size: int, workers: int = 0
) -> Iterator[TensorBatch]:
    """An endless iterator of batches of ``batch_size`` samples."""
    stream = _ShapeStream(dataset, seed, batch_size)
    if workers == 0:
        return iter(stream)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4,
                        persistent_workers=True, collate_fn=lambda b: b)
    return iter(loader)
