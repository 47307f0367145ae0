"""How training rows are put into batches (`train.batching`).

On this task answer length is one of the strongest signs of which model wrote an answer, so
batches of similar length are batches of nearly one class: HF's length grouping (sorting
megabatches of 50 batches by length) saves padding but makes the gradient swing from class to
class. The options:

- `random`: every batch a uniform random draw (HF's RandomSampler); the reference recipe.
- `length`: HF's LengthGroupedSampler (sorted megabatches of 50 batches).
- `pooled`: length grouping within small random pools: shuffle, cut into pools of
  `train.pool_batches` batches, sort each pool by length, cut it into batches, shuffle the
  batches. A pool of a few batches leaves each batch a mix of labels while trimming the
  longest padding.

`bench/batching.py` measures the objective and tokens/s of each; the default is its winner.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class PooledLengthSampler(Sampler[int]):
    """Row order for `pooled` batching; `batch_size` is rows per optimizer step (batch x
    gradient accumulation), so that batch boundaries fall where the Trainer cuts them. Only
    the last batch of an epoch can be short. Deterministic for a seed and epoch.

    `lengths`: tokens per row; `pool_batches`: batches per random pool sorted by length;
    `seed`: the pools' shuffle seed (with the epoch).
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, pool_batches: int, seed: int
    ) -> None:
        if pool_batches < 1:
            raise ValueError("pool_batches must be >= 1")
        self.lengths = torch.as_tensor(list(lengths))
        self.batch_size, self.pool_batches, self.seed = batch_size, pool_batches, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        self.epoch += 1  # the next pass differs even where nobody calls set_epoch
        order = torch.randperm(len(self.lengths), generator=g)
        pool = self.batch_size * self.pool_batches
        parts = []
        for start in range(0, len(order), pool):
            rows = order[start : start + pool]
            parts.append(rows[torch.argsort(self.lengths[rows], descending=True, stable=True)])
        rows = torch.cat(parts) if parts else order
        batches = list(torch.split(rows, self.batch_size))
        full = batches if len(batches[-1]) == self.batch_size else batches[:-1]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=g)]
        if len(full) < len(batches):
            shuffled.append(batches[-1])  # a short batch stays last
        return iter(torch.cat(shuffled).tolist() if shuffled else [])
