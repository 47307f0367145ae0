"""Training batches: `pooled` keeps labels mixed while trimming padding; deterministic."""

import numpy as np
import pytest
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from lorahpo.batching import PooledLengthSampler
from lorahpo.toy import make_toy_frame

pytestmark = pytest.mark.unit

FRAME = make_toy_frame(60, seed=0)  # 420 rows; answer length goes with the source
LENGTHS = FRAME["Response"].str.len().to_numpy()
LABELS = FRAME["target"].to_numpy()
BATCH = 16


def _batches(order):
    order = list(order)
    return [order[i : i + BATCH] for i in range(0, len(order), BATCH)]


def _labels_per_batch(order) -> float:
    return float(np.mean([len(set(LABELS[b])) for b in _batches(order) if len(b) == BATCH]))


def _padding(order) -> float:
    """Padded share of all token slots, batches padded to their longest row."""
    slots = sum(len(b) * LENGTHS[b].max() for b in _batches(order))
    return 1 - LENGTHS.sum() / slots


def test_every_row_once_deterministic_per_seed_and_epoch():
    a = PooledLengthSampler(LENGTHS, BATCH, pool_batches=4, seed=3)
    b = PooledLengthSampler(LENGTHS, BATCH, pool_batches=4, seed=3)
    first, second = list(a), list(a)
    assert sorted(first) == list(range(len(LENGTHS)))
    assert first == list(b) and second == list(b)  # same seed: same order, epoch by epoch
    assert first != second  # another epoch, another order
    b.set_epoch(0)
    assert list(b) == first


def test_only_the_last_batch_is_short_and_batches_are_sorted_pool_slices():
    order = list(PooledLengthSampler(LENGTHS, BATCH, pool_batches=4, seed=0))
    batches = _batches(order)
    assert all(len(b) == BATCH for b in batches[:-1])
    assert len(batches[-1]) == len(LENGTHS) % BATCH or len(batches[-1]) == BATCH
    # each batch is a slice of a pool sorted by length: longest first within the batch...
    assert all((np.diff(LENGTHS[b]) <= 0).all() for b in batches)
    # ...and the batches themselves are shuffled, not one global sort
    firsts = [LENGTHS[b[0]] for b in batches[:-1]]
    assert sorted(firsts, reverse=True) != firsts


def test_pooled_keeps_labels_mixed_where_length_grouping_does_not():
    g = torch.Generator().manual_seed(0)
    random_order = torch.randperm(len(LENGTHS), generator=g).tolist()
    torch.manual_seed(0)
    grouped = list(LengthGroupedSampler(BATCH, lengths=LENGTHS.tolist()))
    pooled = list(PooledLengthSampler(LENGTHS, BATCH, pool_batches=2, seed=0))
    mixed = {
        k: _labels_per_batch(o)
        for k, o in [("random", random_order), ("length", grouped), ("pooled", pooled)]
    }
    padding = {
        k: _padding(o)
        for k, o in [("random", random_order), ("length", grouped), ("pooled", pooled)]
    }
    # HF length grouping: batches of fewer sources; pooled (2 batches a pool): more of
    # random's mix, with a quarter less padding than random
    assert mixed["length"] < mixed["pooled"] <= mixed["random"]
    assert padding["length"] < padding["pooled"] < padding["random"]
