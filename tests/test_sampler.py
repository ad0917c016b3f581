"""PK sampler invariants: P identities x K images per batch, each identity once per epoch
(identity mode) or the reference code's chunks of K (reference mode), replacement only for
identities with fewer than K images, determinism, resume state (mid-epoch too), ranks."""

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


# ---------------------------------------------------------------- reference mode


def reference_epoch(counts, p, k, seed=0, epoch=0, **kwargs):
    pids = np.repeat(np.arange(len(counts)), counts).tolist()
    sampler = PKSampler(pids, p, k, seed=seed, mode="reference", **kwargs)
    sampler.set_epoch(epoch)
    return pids, sampler, list(sampler)


def chunk_use(pids, out, k):
    """Per identity, the chunks of K it gave, in epoch order (each batch: P consecutive chunks)."""
    used: dict[int, list[list[int]]] = {}
    for batch in out:
        for start in range(0, len(batch), k):
            chunk = batch[start: start + k]
            assert len({pids[i] for i in chunk}) == 1  # a chunk is one identity's images
            used.setdefault(pids[chunk[0]], []).append(chunk)
    return used


@pytest.mark.parametrize("epoch", [0, 3])
def test_reference_epoch_is_the_chunked_draw_of_the_reference_sampler(epoch):
    pids, sampler, out = reference_epoch(COUNTS, P, K, seed=2, epoch=epoch)
    assert len(out) == len(sampler) > 0
    for batch in out:
        ids = Counter(pids[i] for i in batch)
        assert len(batch) == P * K and len(ids) == P and set(ids.values()) == {K}
    used = chunk_use(pids, out, K)
    full = {pid: max(1, n // K) for pid, n in enumerate(COUNTS)}  # chunks each identity has this epoch
    for pid, chunks in used.items():
        assert len(chunks) <= full[pid]
        flat = [i for c in chunks for i in c]
        if COUNTS[pid] >= K:
            assert len(set(flat)) == len(flat)  # shuffled once and cut: no image twice in an epoch
    # The draw stops exactly when fewer than P identities still have chunks (the reference's loop).
    left = [pid for pid in full if len(used.get(pid, [])) < full[pid]]
    assert len(left) < P
    assert sum(len(c) for c in used.values()) == P * len(out)


def test_reference_epoch_length_equals_the_reference_count():
    # One chunk per identity: the reference loop makes floor(#ids / P) batches, whatever the draw.
    for seed in range(5):
        _, sampler, out = reference_epoch([K] * 11 + [K + 1] * 6, P, K, seed=seed)
        assert len(out) == len(sampler) == 17 // P
    # Many chunks each: every chunk is used but for fewer than P identities' leftovers; a Market-like
    # set (751 ids, 4-30 images) gives ~4x the identity-mode epoch at P=16, K=4.
    counts = np.random.default_rng(1).integers(4, 31, size=751).tolist()
    chunks = sum(n // 4 for n in counts)
    _, sampler, out = reference_epoch(counts, 16, 4)
    assert len(out) == len(sampler)
    assert chunks / 16 - 16 * 7 / 16 <= len(out) <= chunks // 16  # at most P-1 ids x 7 chunks left over
    assert len(out) > 3.5 * len(PKSampler(np.repeat(np.arange(751), counts).tolist(), 16, 4))


def test_reference_identities_below_k_give_one_chunk_with_replacement():
    pids, _, out = reference_epoch(COUNTS, P, K, seed=4)
    used = chunk_use(pids, out, K)
    for pid, n in enumerate(COUNTS):
        if n < K and pid in used:
            (chunk,) = used[pid]  # one chunk, K draws from n < K images
            assert len(chunk) == K and set(chunk) <= {i for i, q in enumerate(pids) if q == pid}


def test_reference_deterministic_given_seed_and_epoch():
    a = reference_epoch(COUNTS, P, K, seed=5, epoch=2)[2]
    assert a == reference_epoch(COUNTS, P, K, seed=5, epoch=2)[2]
    assert a != reference_epoch(COUNTS, P, K, seed=5, epoch=3)[2]
    assert a != reference_epoch(COUNTS, P, K, seed=6, epoch=2)[2]


@pytest.mark.parametrize("mode", ["identity", "reference"])
def test_resume_mid_epoch_replays_the_rest_exactly(mode):
    counts = [2, 5, 9, 3, 7, 4, 6, 8, 1, 5, 6, 9]
    pids = np.repeat(np.arange(len(counts)), counts).tolist()
    run = PKSampler(pids, P, K, seed=7, mode=mode)
    run.set_epoch(3)
    whole = list(run)
    assert len(whole) >= 3
    killed = PKSampler(pids, P, K, seed=7, mode=mode)
    killed.set_epoch(3)
    it = iter(killed)
    head = [next(it), next(it)]
    state = killed.state_dict()  # "killed" after two batches
    assert state["position"] == 2
    resumed = PKSampler(pids, P, K, seed=0, mode=mode)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # what the training loop does first: must not restart the epoch
    assert head + list(resumed) == whole
    resumed.set_epoch(3)
    assert list(resumed) == whole  # a plain set_epoch starts the epoch from its first batch
    resumed.set_epoch(4)
    assert resumed.state_dict()["position"] == 0


def test_a_checkpoint_of_the_other_mode_is_a_user_error_and_old_states_load():
    sampler = PKSampler(PIDS, P, K, mode="reference")
    with pytest.raises(UserError, match="data.sampler=identity"):
        sampler.load_state_dict(PKSampler(PIDS, P, K).state_dict())
    old = PKSampler(PIDS, P, K)
    old.load_state_dict({"seed": 1, "epoch": 2})  # a checkpoint from before the mode/position keys
    assert old.state_dict() == {"seed": 1, "epoch": 2, "mode": "identity", "position": 0}
    with pytest.raises(UserError, match="data.sampler"):
        PKSampler(PIDS, P, K, mode="paper")


def test_reference_two_ranks_share_each_global_batch_by_whole_identities():
    ranks = [PKSampler(PIDS, 2, K, seed=1, world_size=2, rank=r, mode="reference") for r in (0, 1)]
    single = PKSampler(PIDS, 4, K, seed=1, mode="reference")
    for sampler in (*ranks, single):
        sampler.set_epoch(2)
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for b0, b1, whole in zip(*ranks, single, strict=True):
        ids0, ids1 = {PIDS[i] for i in b0}, {PIDS[i] for i in b1}
        assert len(b0) == len(b1) == 2 * K and len(ids0) == len(ids1) == 2 and not ids0 & ids1
        assert b0 + b1 == whole
