"""PK sampler invariants: P identities x K images per batch, each identity once per epoch,
replacement only for identities with fewer than K images, determinism, resume state, ranks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mot_reid.errors import UserError
from mot_reid.reid.sampler import PKSampler

P, K = 4, 3
# 11 identities with 1..6 images each (some fewer than K), in an interleaved order.
COUNTS = [1, 2, 3, 4, 5, 6, 2, 3, 6, 1, 4]
PIDS = np.repeat(np.arange(len(COUNTS)), COUNTS)
PIDS = PIDS[np.random.default_rng(0).permutation(len(PIDS))].tolist()


def batches(sampler: PKSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_every_batch_is_p_ids_by_k_images(epoch):
    sampler = PKSampler(PIDS, P, K, seed=3)
    out = batches(sampler, epoch)
    assert len(out) == len(sampler) == 3  # ceil(11 / 4)
    for batch in out:
        assert len(batch) == P * K
        ids = Counter(PIDS[i] for i in batch)
        assert len(ids) == P and set(ids.values()) == {K}
        for pid in ids:
            chosen = [i for i in batch if PIDS[i] == pid]
            if COUNTS[pid] >= K:  # enough images: no repeats
                assert len(set(chosen)) == K


def test_each_identity_once_per_epoch_and_fillers_only_in_the_last_batch():
    sampler = PKSampler(PIDS, P, K, seed=0)
    out = batches(sampler, 0)
    per_batch = [{PIDS[i] for i in b} for b in out]
    first_pass = per_batch[0] | per_batch[1]
    assert len(first_pass) == 2 * P  # no identity twice in full batches
    assert set(range(len(COUNTS))) == first_pass | per_batch[2]  # everyone is seen
    assert len(per_batch[2] - first_pass) == len(COUNTS) - 2 * P  # the 3 left over, plus 1 filler


def test_identities_with_few_images_are_drawn_with_replacement():
    sampler = PKSampler(PIDS, P, K, seed=0)
    single = [i for i, pid in enumerate(PIDS) if pid == 0]
    for epoch in range(3):
        for batch in batches(sampler, epoch):
            if single[0] in batch:
                assert batch.count(single[0]) == K


def test_deterministic_given_seed_and_epoch():
    a, b = PKSampler(PIDS, P, K, seed=5), PKSampler(PIDS, P, K, seed=5)
    assert batches(a, 2) == batches(b, 2)
    assert batches(a, 2) != batches(a, 3)
    assert batches(a, 2) != batches(PKSampler(PIDS, P, K, seed=6), 2)


def test_state_round_trip_replays_the_epoch():
    a = PKSampler(PIDS, P, K, seed=9)
    a.set_epoch(4)
    b = PKSampler(PIDS, P, K, seed=0)
    b.load_state_dict(a.state_dict())
    assert list(a) == list(b)


def test_two_ranks_share_each_global_batch_by_whole_identities():
    ranks = [PKSampler(PIDS, 2, K, seed=1, world_size=2, rank=r) for r in (0, 1)]
    single = PKSampler(PIDS, 4, K, seed=1)
    for r in ranks:
        r.set_epoch(1)
    single.set_epoch(1)
    for b0, b1, whole in zip(*ranks, single, strict=True):
        ids0, ids1 = {PIDS[i] for i in b0}, {PIDS[i] for i in b1}
        assert len(b0) == len(b1) == 2 * K and not ids0 & ids1
        assert b0 + b1 == whole  # the same draw, split between the ranks


def test_too_few_identities_is_a_user_error():
    with pytest.raises(UserError, match="identities"):
        PKSampler([0, 0, 1, 1], 4, 2)
