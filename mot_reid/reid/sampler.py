"""PK identity sampler: every batch holds P identities x K images, the layout batch-hard triplet
mining needs (each anchor has K-1 positives and (P-1)K negatives in its batch).

An epoch visits every training identity once, in a shuffled order; the last batch, if short
of P identities, is completed with identities drawn from the earlier ones, so all batches have
the same shape (steady for `torch.compile` and DDP). Identities with fewer than K images are
sampled with replacement. The order depends only on (seed, epoch): `set_epoch` before each epoch
and a resumed run replays the same batches.

Multi-process training: each of `world_size` ranks takes P whole identities of a global batch of
P x world_size identities, so each rank's triplet loss sees complete identities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from mot_reid.errors import UserError


class PKSampler(Sampler[list[int]]):
    """A batch sampler (pass as `DataLoader(batch_sampler=...)`) yielding lists of P*K indices."""

    def __init__(self, pids: Sequence[int], ids_per_batch: int, images_per_id: int, seed: int = 0,
                 world_size: int = 1, rank: int = 0):
        if ids_per_batch < 2 or images_per_id < 1:
            raise UserError(f"PK sampling needs P >= 2 and K >= 1, got P={ids_per_batch} K={images_per_id}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        groups: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            groups.setdefault(int(pid), []).append(index)
        self.by_id = {pid: np.asarray(ix) for pid, ix in sorted(groups.items())}
        self.ids = np.asarray(list(self.by_id), dtype=np.int64)
        self.P, self.K = ids_per_batch, images_per_id
        self.seed, self.epoch = seed, 0
        self.world_size, self.rank = world_size, rank
        needed = ids_per_batch * world_size
        if len(self.ids) < needed:
            raise UserError(
                f"the training set has {len(self.ids)} identities, fewer than the {needed} one batch needs "
                f"(data.ids_per_batch={ids_per_batch} x {world_size} process(es)); lower data.ids_per_batch"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        global_p = self.P * self.world_size
        return -(-len(self.ids) // global_p)

    def identity_order(self, rng: np.random.Generator) -> np.ndarray:
        """All identities shuffled, padded to whole global batches with distinct-in-batch fillers."""
        global_p = self.P * self.world_size
        order = rng.permutation(self.ids)
        short = (-len(order)) % global_p
        if short:
            last_group = order[len(order) - (global_p - short):]
            candidates = np.setdiff1d(self.ids, last_group)
            order = np.concatenate([order, rng.choice(candidates, size=short, replace=False)])
        return order

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self.identity_order(rng)
        global_p = self.P * self.world_size
        for start in range(0, len(order), global_p):
            batch = []
            for pid in order[start: start + global_p]:  # draw for every rank, so all ranks stay in step
                images = self.by_id[int(pid)]
                batch.extend(rng.choice(images, size=self.K, replace=len(images) < self.K).tolist())
            mine = self.rank * self.P * self.K
            yield batch[mine: mine + self.P * self.K]

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
