"""PK identity sampler: every batch holds P identities x K images, the layout batch-hard triplet
mining needs (each anchor has K-1 positives and (P-1)K negatives in its batch).

Two epoch definitions (recipe key `data.sampler`):

- `identity` (default): an epoch visits every training identity once, in a shuffled order, with K
  images drawn for it; the last batch, if short of P identities, is completed with identities drawn
  from the earlier ones, so all batches have the same shape. ceil(#ids / P) batches (Market-1501
  at P=16: 47).
- `reference`: the epoch of the Bag-of-Tricks code's `RandomIdentitySampler`, which the paper's
  120-epoch schedule (steps at 40/70) was tuned with. Each identity's images are shuffled and cut
  into floor(n / K) chunks of K (an identity with fewer than K images gets one chunk drawn with
  replacement; a remainder of fewer than K images is left out this epoch); batches then take one
  chunk from each of P distinct identities drawn among those with chunks left, until fewer than P
  such identities remain (their chunks are dropped). About sum(floor(n / K)) / P batches (Market-1501:
  ~200), so ~4x the optimizer steps of `identity` per epoch.

Both: identities with fewer than K images are sampled with replacement; an epoch's batches depend
only on (seed, epoch): `set_epoch` before each epoch, and a resumed run replays the same batches,
from the middle of an epoch too (`state_dict` records how many batches were handed out).

Multi-process training: each of `world_size` ranks takes P whole identities of a global batch of
P x world_size identities (drawn as one batch of that many identities), so each rank's triplet loss
sees complete identities.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from mot_reid.errors import UserError

MODES = ("identity", "reference")


class PKSampler(Sampler[list[int]]):
    """A batch sampler (pass as `DataLoader(batch_sampler=...)`) yielding lists of P*K indices."""

    def __init__(self, pids: Sequence[int], ids_per_batch: int, images_per_id: int, seed: int = 0,
                 world_size: int = 1, rank: int = 0, mode: str = "identity"):
        if ids_per_batch < 2 or images_per_id < 1:
            raise UserError(f"PK sampling needs P >= 2 and K >= 1, got P={ids_per_batch} K={images_per_id}")
        if mode not in MODES:
            raise UserError(f"data.sampler must be one of {', '.join(MODES)}, got {mode!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        groups: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            groups.setdefault(int(pid), []).append(index)
        self.by_id = {pid: np.asarray(ix) for pid, ix in sorted(groups.items())}
        self.ids = np.asarray(list(self.by_id), dtype=np.int64)
        self.P, self.K = ids_per_batch, images_per_id
        self.seed, self.epoch, self.mode = seed, 0, mode
        self.world_size, self.rank = world_size, rank
        self.position = 0  # batches of the current epoch already handed out (for a mid-epoch resume)
        self._resuming = False  # set by load_state_dict until the next iteration starts
        self._plan_key: tuple | None = None
        self._plan: list[list[int]] = []
        needed = ids_per_batch * world_size
        if len(self.ids) < needed:
            raise UserError(
                f"the training set has {len(self.ids)} identities, fewer than the {needed} one batch needs "
                f"(data.ids_per_batch={ids_per_batch} x {world_size} process(es)); lower data.ids_per_batch"
            )

    @property
    def global_p(self) -> int:
        return self.P * self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its first batch, except right after `load_state_dict` for that same epoch
        (a mid-epoch resume continues where the checkpoint stopped)."""
        if epoch != self.epoch or not self._resuming:
            self.position = 0
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches in the whole current epoch (fixed in identity mode; varies a little per epoch in
        reference mode, so it is computed from the epoch's plan)."""
        if self.mode == "identity":
            return -(-len(self.ids) // self.global_p)
        return len(self.plan())

    # ------------------------------------------------------------ identity mode

    def identity_order(self, rng: np.random.Generator) -> np.ndarray:
        """All identities shuffled, padded to whole global batches with distinct-in-batch fillers."""
        global_p = self.global_p
        order = rng.permutation(self.ids)
        short = (-len(order)) % global_p
        if short:
            last_group = order[len(order) - (global_p - short):]
            candidates = np.setdiff1d(self.ids, last_group)
            order = np.concatenate([order, rng.choice(candidates, size=short, replace=False)])
        return order

    def _identity_plan(self, rng: np.random.Generator) -> list[list[int]]:
        order = self.identity_order(rng)
        plan = []
        for start in range(0, len(order), self.global_p):
            batch = []
            for pid in order[start: start + self.global_p]:
                images = self.by_id[int(pid)]
                batch.extend(rng.choice(images, size=self.K, replace=len(images) < self.K).tolist())
            plan.append(batch)
        return plan

    # ------------------------------------------------------------ reference mode

    def chunks(self, rng: np.random.Generator) -> dict[int, list[np.ndarray]]:
        """Each identity's images shuffled and cut into chunks of K (one chunk with replacement below K)."""
        out = {}
        for pid, images in self.by_id.items():
            if len(images) < self.K:
                images = rng.choice(images, size=self.K, replace=True)
            shuffled = rng.permutation(images)
            whole = len(shuffled) // self.K
            out[pid] = [shuffled[i * self.K: (i + 1) * self.K] for i in range(whole)]
        return out

    def _reference_plan(self, rng: np.random.Generator) -> list[list[int]]:
        chunks = self.chunks(rng)
        left = {pid: len(c) for pid, c in chunks.items()}
        available = [pid for pid in chunks if left[pid]]
        plan = []
        while len(available) >= self.global_p:
            chosen = rng.choice(np.asarray(available), size=self.global_p, replace=False)
            batch = []
            for pid in chosen.tolist():
                batch.extend(chunks[pid][len(chunks[pid]) - left[pid]].tolist())  # chunks in order
                left[pid] -= 1
            available = [pid for pid in available if left[pid]]
            plan.append(batch)
        return plan

    # ------------------------------------------------------------ both

    def plan(self) -> list[list[int]]:
        """The current epoch's global batches (P x world_size identities x K indices each), cached."""
        key = (self.seed, self.epoch, self.mode)
        if self._plan_key != key:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._plan = self._identity_plan(rng) if self.mode == "identity" else self._reference_plan(rng)
            self._plan_key = key
        return self._plan

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.plan()
        self._resuming = False
        mine = self.rank * self.P * self.K  # this rank's whole identities of each global batch
        while self.position < len(plan):
            batch = plan[self.position]
            self.position += 1
            yield batch[mine: mine + self.P * self.K]
        self.position = 0  # a finished epoch iterates again from its start

    def state_dict(self) -> dict:
        """Seed, epoch, mode and batches already handed out in this epoch. Behind a DataLoader the
        loader may have fetched a few batches ahead of training: store the trainer's own count as
        `position` to resume exactly mid-epoch."""
        return {"seed": self.seed, "epoch": self.epoch, "mode": self.mode, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        mode = state.get("mode", "identity")  # checkpoints from before the key: identity mode
        if mode != self.mode:
            raise UserError(f"the checkpoint was trained with data.sampler={mode}, this run asks for "
                            f"{self.mode}; pass --set data.sampler={mode} to resume it")
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self.position = int(state.get("position", 0))
        self._resuming = True
