"""The training sampler: a shuffled epoch that a checkpoint can stop and resume exactly."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Every image once per epoch in a random order, each with its own random seed:
    yields ``(index, seed)``, and the dataset draws that item's crop, flip, captions and
    mismatched image from ``seed`` alone. So what an item looks like depends on where it falls
    in the epoch, never on when or in which process it is loaded (Lightning fetches one batch
    ahead; DataLoader workers have RNGs of their own), and a run resumed mid-epoch sees the
    same batches as an unbroken one.

    The epoch's order and seeds come from one number drawn from torch's global RNG when the
    epoch starts (as ``RandomSampler`` draws its seed), so ``seed_everything`` fixes them.
    :meth:`resume` makes the next epoch repeat a recorded one from a given position.

    Args:
        num_items: the dataset's length.
    """

    def __init__(self, num_items: int) -> None:
        self.num_items = num_items
        self.epoch_seed: int | None = None  # the seed of the epoch under way
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self._resume is not None:
            (seed, start), self._resume = self._resume, None
        else:
            seed, start = int(torch.randint(2**62, ()).item()), 0
        self.epoch_seed = seed
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.num_items, generator=g).tolist()
        seeds = torch.randint(2**62, (self.num_items,), generator=g).tolist()
        yield from zip(order[start:], seeds[start:])

    def resume(self, epoch_seed: int, start: int) -> None:
        """Make the next epoch the one of ``epoch_seed``, from its ``start``-th item on."""
        self._resume = (int(epoch_seed), int(start))
