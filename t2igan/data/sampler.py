"""The training sampler: an epoch of items, each with its own seed, that a checkpoint can stop
and resume exactly; in a random order, or class-uniform as the icml2016 Lua loader draws."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """One epoch of training items, each with its own random seed: yields ``(index, seed)``,
    and the dataset draws that item's crop, flip, captions and mismatched image from ``seed``
    alone. So what an item looks like depends on where it falls in the epoch, never on when or
    in which process it is loaded (Lightning fetches one batch ahead; DataLoader workers have
    RNGs of their own), and a run resumed mid-epoch sees the same batches as an unbroken one.

    The order: with no ``labels``, every image once, shuffled. With ``labels``, the icml2016 Lua
    loader's draw: a class uniformly at random, then one of its images uniformly, with
    replacement, ``len(labels)`` draws an epoch, so every class is seen equally often whatever
    its size (what class-balanced training needs).

    With ``labels`` and ``distinct`` = B, minibatches of B distinct classes, one image each
    (the cvpr2016 SJE loader, MultimodalMinibatchLoaderCaption.lua#L53-104): for every batch,
    B classes drawn without replacement, then one of each class's images uniformly;
    ``len(labels)`` items an epoch (its last ``len(labels) % B`` dropped with the last batch).

    The epoch's order and seeds come from one number drawn from torch's global RNG when the
    epoch starts (as ``RandomSampler`` draws its seed), so ``seed_everything`` (and the model's
    per-rank seeds) fix them. :meth:`resume` makes the next epoch repeat a recorded one from a
    given position.

    Args:
        num_items: the dataset's length (items an epoch).
        labels: class of every item, for the class-uniform order.
        distinct: classes per minibatch (with ``labels``): batches of distinct classes.
    """

    def __init__(self, num_items: int, labels=None, distinct: int | None = None) -> None:
        self.num_items = num_items
        self.distinct = distinct
        self.members = None
        if labels is not None:
            labels = np.asarray(labels)
            if len(labels) != num_items:
                raise ValueError(f"{len(labels)} labels for {num_items} items")
            self.members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if distinct is not None and (self.members is None or distinct > len(self.members)):
            have = "no labels" if self.members is None else f"{len(self.members)} classes"
            raise ValueError(f"minibatches of {distinct} distinct classes need as many: {have}")
        self.epoch_seed: int | None = None  # the seed of the epoch under way
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.num_items

    def order(self, g: torch.Generator) -> list[int]:
        """The epoch's items, drawn from ``g``."""
        if self.members is None:
            return torch.randperm(self.num_items, generator=g).tolist()
        if self.distinct is not None:
            per = self.distinct
            batches = [torch.randperm(len(self.members), generator=g)[:per]
                       for _ in range(self.num_items // per)]  # fmt: skip
            rest = self.num_items - per * len(batches)  # filler: dropped with the last batch
            classes = torch.cat([*batches, torch.zeros(rest, dtype=torch.long)]).tolist()
        else:
            classes = torch.randint(len(self.members), (self.num_items,), generator=g).tolist()
        within = torch.rand(self.num_items, generator=g, dtype=torch.float64).tolist()
        return [
            int(self.members[c][int(u * len(self.members[c]))]) for c, u in zip(classes, within)
        ]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self._resume is not None:
            (seed, start), self._resume = self._resume, None
        else:
            seed, start = int(torch.randint(2**62, ()).item()), 0
        self.epoch_seed = seed
        g = torch.Generator().manual_seed(seed)
        order = self.order(g)
        seeds = torch.randint(2**62, (self.num_items,), generator=g).tolist()
        yield from zip(order[start:], seeds[start:])

    def resume(self, epoch_seed: int, start: int) -> None:
        """Make the next epoch the one of ``epoch_seed``, from its ``start``-th item on."""
        self._resume = (int(epoch_seed), int(start))
