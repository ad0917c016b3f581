"""The DeepSORT tracker, with StrongSORT/ByteTrack switches, vectorised across tracks.

One `update` per frame: predict all tracks (one batched Kalman step), optionally warp them by the
camera motion, associate detections in two stages (appearance or motion cascade over confirmed
tracks, then IoU for new and just-missed tracks; optionally a third, ByteTrack-style stage for
low-score boxes and a fourth, OC-SORT-style recovery by last observed boxes), correct matched
tracks (one batched Kalman update; optionally OC-SORT's re-update after a gap), start tracks for
the unmatched detections and report confirmed tracks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trackers import boxes
from trackers.assignment import matching_cascade, min_cost_matching
from trackers.cmc import CameraMotion, warp_states
from trackers.config import TrackerConfig
from trackers.distances import INFTY_COST, cosine_distance, gate, iou_distance, nearest_cosine_distance
from trackers.kalman import BoxKalman
from trackers.observation import anchor_box, direction_cost, reupdate
from trackers.track import EmaMemory, Gallery, Track


@dataclass
class Tracks:
    """One frame's reported tracks, as parallel arrays of length M."""

    track_id: np.ndarray  # (M,) int64, unique within the tracker's life
    xyxy: np.ndarray  # (M,4) float32 pixel x1,y1,x2,y2
    score: np.ndarray  # (M,) float32, score of the track's last detection
    cls: np.ndarray  # (M,) int64, class of the track's last detection
    det_index: np.ndarray  # (M,) int64, index into this frame's input detections; -1 when coasting

    def __len__(self) -> int:
        return len(self.track_id)

    @classmethod
    def empty(cls) -> Tracks:
        return cls(np.empty(0, np.int64), np.empty((0, 4), np.float32), np.empty(0, np.float32),
                   np.empty(0, np.int64), np.empty(0, np.int64))


@dataclass
class _Detections:
    xyxy: np.ndarray  # (K,4) float64
    score: np.ndarray  # (K,)
    cls: np.ndarray  # (K,) int64
    feature: np.ndarray | None  # (K,D) float32, unit length
    index: np.ndarray  # (K,) position in the caller's arrays

    def take(self, keep: np.ndarray) -> _Detections:
        feature = None if self.feature is None else self.feature[keep]
        return _Detections(self.xyxy[keep], self.score[keep], self.cls[keep], feature, self.index[keep])


class DeepSort:
    """Multi-object tracker. `DeepSort(TrackerConfig(), frame_rate=30).update(xyxy, scores, ...)`."""

    def __init__(self, cfg: TrackerConfig | None = None, frame_rate: float = 30.0):
        self.cfg = cfg or TrackerConfig()
        self.frame_rate = float(frame_rate)
        max_age = self.cfg.max_age
        if self.cfg.scale_max_age_by_frame_rate:
            max_age = max(1, round(max_age * self.frame_rate / self.cfg.reference_frame_rate))
        self.max_age = int(max_age)
        self.kalman = BoxKalman(self.cfg.std_weight_position, self.cfg.std_weight_velocity)
        self.camera = None if self.cfg.cmc == "none" else CameraMotion(self.cfg.cmc, self.cfg.cmc_downscale)
        # Tracks keep their observed boxes only for the switches that read them.
        self.observe = self.cfg.reupdate_after_gap or self.cfg.direction_weight > 0 or self.cfg.recovery
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.next_id = 1
        self.frame_count = 0
        self.feature_dim: int | None = None
        if self.camera is not None:
            self.camera.previous = None

    # ---------------------------------------------------------------- public step
    def update(self, xyxy, scores, classes=None, features=None, frame=None) -> Tracks:
        """Advance one frame with this frame's detections; returns the confirmed tracks to report.

        Detections with non-finite or zero-area boxes, non-finite scores, or unusable features at or
        above min_confidence are dropped (their indices never appear in `det_index`); the feature rows of
        weaker boxes are never read. Arrays of inconsistent shapes raise ValueError.
        """
        dets = self._validate(xyxy, scores, classes, features)
        self.frame_count += 1
        if self.tracks:
            self.mean, self.cov = self.kalman.predict(self.mean, self.cov)
            # A long coast can push height/aspect through zero; keep boxes proper.
            self.mean[:, 2:4] = np.maximum(self.mean[:, 2:4], 1e-3)
            for track in self.tracks:
                track.predict()
        if self.camera is not None and frame is not None:
            warp = self.camera.estimate(np.asarray(frame))
            self.mean, self.cov = warp_states(self.mean, self.cov, warp)

        high = dets.score >= self.cfg.min_confidence
        strong = dets.take(high)
        matches, unmatched_tracks, unmatched_dets = self._associate(strong)
        matched_det = np.full(len(self.tracks), -1, dtype=np.int64)  # row -> index into `strong`
        matched_det[matches[:, 0]] = matches[:, 1]
        self._correct(matches[:, 0], strong, matches[:, 1], use_features=True)
        weak = strong.take(np.zeros(len(strong.score), dtype=bool))

        if self.cfg.second_association and len(unmatched_tracks):
            weak = dets.take(~high & (dets.score >= self.cfg.low_score_threshold))
            rows = np.array([r for r in unmatched_tracks if self.tracks[r].is_confirmed], dtype=np.int64)
            if len(rows) and len(weak.score):
                cost = iou_distance(self._track_boxes(), weak.xyxy)
                weak_matches, _, _ = min_cost_matching(cost, self.cfg.second_max_iou_distance, rows)
                self._correct(weak_matches[:, 0], weak, weak_matches[:, 1], use_features=False)
                unmatched_tracks = np.setdiff1d(unmatched_tracks, weak_matches[:, 0])
                # Remember the caller's index of the weak box in the same table, offset to tell them apart.
                matched_det[weak_matches[:, 0]] = -2 - weak_matches[:, 1]
        if self.cfg.recovery and len(unmatched_tracks) and len(unmatched_dets):
            found, unmatched_tracks, unmatched_dets = self._recover(unmatched_tracks, strong, unmatched_dets)
            self._correct(found[:, 0], strong, found[:, 1], use_features=True)
            matched_det[found[:, 0]] = found[:, 1]
        for row in unmatched_tracks:
            self.tracks[row].miss()

        self._start_tracks(strong.take(unmatched_dets))
        matched_det = np.concatenate([matched_det, unmatched_dets.astype(np.int64)])  # new rows: their boxes
        reported = self._report(matched_det, strong, weak)
        self._drop_deleted()
        return reported

    def wants_features(self, xyxy, scores) -> np.ndarray:
        """Mask of the boxes whose appearance features this tracker can use: only boxes at or above
        min_confidence (and tall enough) enter appearance matching; weaker ones are matched by IoU alone,
        in the second association, or dropped. A caller may skip embedding the others (any row, zeros
        included, stands in for them): the tracks are the same."""
        xyxy, scores = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)
        return (scores >= self.cfg.min_confidence) & ((xyxy[:, 3] - xyxy[:, 1]) >= self.cfg.min_box_height)

    # ---------------------------------------------------------------- association
    def _associate(self, dets: _Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.cfg
        n_tracks, n_dets = len(self.tracks), len(dets.score)
        all_rows = np.arange(n_tracks)
        if n_tracks == 0 or n_dets == 0:
            return np.empty((0, 2), dtype=np.int64), all_rows, np.arange(n_dets)
        confirmed = np.array([t.is_confirmed for t in self.tracks])
        tsu = np.array([t.time_since_update for t in self.tracks])
        rows_c = all_rows[confirmed]
        track_boxes = self._track_boxes()
        iou_cost = iou_distance(track_boxes, dets.xyxy)

        matches_a = np.empty((0, 2), dtype=np.int64)
        unmatched_a, cols = rows_c, np.arange(n_dets)
        if len(rows_c):
            maha = self.kalman.gating_distance(self.mean[rows_c], self.cov[rows_c], boxes.xyxy_to_xyah(dets.xyxy))
            if dets.feature is not None:
                appearance = self._appearance_cost(rows_c, dets.feature)
                cost_c, max_cost = gate(appearance, maha, cfg.gating_threshold, cfg.appearance_weight), \
                    cfg.max_cosine_distance
            else:  # motion only: the first stage matches confirmed tracks by gated IoU
                cost_c, max_cost = gate(iou_cost[rows_c], maha, cfg.gating_threshold), cfg.motion_max_iou_distance
                if cfg.direction_weight > 0:
                    cost_c, max_cost = self._with_direction(rows_c, dets.xyxy, cost_c, max_cost)
            cost = np.full((n_tracks, n_dets), np.inf)
            cost[rows_c] = cost_c
            if cfg.matching == "cascade":
                # Levels 1..max_age as in the reference: a track missed max_age frames running is not
                # offered a detection again (it is deleted at the end of this frame).
                matches_a, unmatched_a, cols = matching_cascade(cost, max_cost, tsu, rows_c, cols, max(1, self.max_age))
            else:
                matches_a, unmatched_a, cols = min_cost_matching(cost, max_cost, rows_c, cols)

        # IoU stage: tentative tracks and confirmed tracks missed only in the previous frame.
        candidates = np.concatenate([all_rows[~confirmed], unmatched_a[tsu[unmatched_a] == 1]])
        keep_unmatched = unmatched_a[tsu[unmatched_a] != 1]
        matches_b, unmatched_b, cols = min_cost_matching(iou_cost, cfg.max_iou_distance, candidates, cols)
        matches = np.concatenate([matches_a, matches_b])
        return matches, np.concatenate([keep_unmatched, unmatched_b]).astype(np.int64), cols

    def _with_direction(self, rows: np.ndarray, xyxy: np.ndarray, cost: np.ndarray,
                        max_cost: float) -> tuple[np.ndarray, float]:
        """OCM: pairs the IoU stage allows also pay `direction_weight` x the turn they imply; the bar
        rises by the largest such payment, so the direction re-ranks allowed pairs but admits none."""
        anchors = np.stack([anchor_box(self.tracks[r].history, self.frame_count, self.cfg.direction_delta_t)
                            for r in rows])
        velocity = np.stack([self.tracks[r].velocity for r in rows])
        turn = self.cfg.direction_weight * direction_cost(velocity, anchors, xyxy)
        return np.where(cost <= max_cost, cost + turn, INFTY_COST), max_cost + self.cfg.direction_weight

    def _recover(self, rows: np.ndarray, dets: _Detections, cols: np.ndarray):
        """OCR: leftover boxes against the last observed box of leftover, still-alive tracks, by IoU."""
        alive = np.array([self.tracks[r].time_since_update <= self.max_age for r in rows], dtype=bool)
        if not alive.any():
            return np.empty((0, 2), dtype=np.int64), rows, cols
        last = np.stack([self.tracks[r].last_box for r in rows])
        cost = np.full((len(self.tracks), len(dets.score)), np.inf)
        cost[rows[alive]] = iou_distance(last[alive], dets.xyxy)
        found, _, cols = min_cost_matching(cost, self.cfg.recovery_max_iou_distance, rows[alive], cols)
        return found, np.setdiff1d(rows, found[:, 0]), cols

    def _appearance_cost(self, rows: np.ndarray, features: np.ndarray) -> np.ndarray:
        memories = [self.tracks[r].memory.matrix() for r in rows]
        if self.cfg.appearance == "ema":
            stacked = np.zeros((len(rows), features.shape[1]), dtype=np.float32)
            has = np.array([m.size > 0 for m in memories], dtype=bool)
            if has.any():
                stacked[has] = np.concatenate([m for m in memories if m.size > 0])
            cost = cosine_distance(stacked, features).astype(np.float64)
            cost[~has] = 1.0
            return cost
        return nearest_cosine_distance(memories, features)

    def _track_boxes(self) -> np.ndarray:
        return boxes.xyah_to_xyxy(self.mean[:, :4])

    # ---------------------------------------------------------------- state changes
    def _correct(self, rows: np.ndarray, dets: _Detections, cols: np.ndarray, use_features: bool) -> None:
        if len(rows) == 0:
            return
        confidence = dets.score[cols] if self.cfg.nsa else None
        self.mean[rows], self.cov[rows] = self.kalman.update(
            self.mean[rows], self.cov[rows], boxes.xyxy_to_xyah(dets.xyxy[cols]), confidence)
        for row, col in zip(rows, cols, strict=True):
            track = self.tracks[row]
            if self.observe:
                gap = track.time_since_update
                if self.cfg.reupdate_after_gap and gap > 1 and track.observed_state is not None:
                    # ORU replaces the ordinary update above: the coasting prediction it corrected is discarded.
                    self.mean[row], self.cov[row] = reupdate(self.kalman, *track.observed_state, track.last_box,
                                                             dets.xyxy[col], gap)
                track.observe(self.frame_count, dets.xyxy[col], self.cfg.direction_delta_t)
                track.observed_state = (self.mean[row].copy(), self.cov[row].copy())
            feature = dets.feature[col] if use_features and dets.feature is not None else None
            track.hit(float(dets.score[col]), int(dets.cls[col]), feature)

    def _start_tracks(self, dets: _Detections) -> None:
        if len(dets.score) == 0:
            return
        mean, cov = self.kalman.initiate(boxes.xyxy_to_xyah(dets.xyxy))
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])
        for k in range(len(dets.score)):
            if self.cfg.appearance == "ema":
                memory = EmaMemory(self.cfg.ema_alpha)
            else:
                memory = Gallery(self.cfg.nn_budget)
            if dets.feature is not None:
                memory.add(dets.feature[k])
            track = Track(self.next_id, self.cfg.n_init, self.max_age, memory, float(dets.score[k]), int(dets.cls[k]))
            if self.observe:
                track.observe(self.frame_count, dets.xyxy[k], self.cfg.direction_delta_t)
                track.observed_state = (mean[k].copy(), cov[k].copy())
            self.tracks.append(track)
            self.next_id += 1

    def _drop_deleted(self) -> None:
        keep = np.array([not t.is_deleted for t in self.tracks], dtype=bool)
        if keep.all():
            return
        self.tracks = [t for t, k in zip(self.tracks, keep, strict=True) if k]
        self.mean, self.cov = self.mean[keep], self.cov[keep]

    def _report(self, matched_det: np.ndarray, strong: _Detections, weak: _Detections) -> Tracks:
        rows = [r for r, t in enumerate(self.tracks)
                if t.is_confirmed and t.time_since_update <= self.cfg.report_coasting_frames]
        if not rows:
            return Tracks.empty()
        rows = np.asarray(rows, dtype=np.int64)
        xyxy = self._track_boxes()[rows]
        det_index = np.full(len(rows), -1, dtype=np.int64)
        for k, r in enumerate(rows):
            m = matched_det[r]
            if m == -1:
                continue
            source, col = (strong, m) if m >= 0 else (weak, -2 - m)
            det_index[k] = source.index[col]
            if self.cfg.output_box == "detection":
                xyxy[k] = source.xyxy[col]
        return Tracks(
            track_id=np.array([self.tracks[r].track_id for r in rows], dtype=np.int64),
            xyxy=xyxy.astype(np.float32),
            score=np.array([self.tracks[r].score for r in rows], dtype=np.float32),
            cls=np.array([self.tracks[r].cls for r in rows], dtype=np.int64),
            det_index=det_index,
        )

    # ---------------------------------------------------------------- input checks
    def _validate(self, xyxy, scores, classes, features) -> _Detections:
        xyxy = np.asarray(xyxy, dtype=np.float64)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {xyxy.shape}")
        n = len(xyxy)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {scores.shape}")
        if classes is None:
            classes = np.zeros(n, dtype=np.int64)
        else:
            classes = np.asarray(classes).reshape(-1)
            if classes.shape != (n,):
                raise ValueError(f"classes must have shape ({n},), got {classes.shape}")
            classes = np.nan_to_num(classes.astype(np.float64), nan=-1).astype(np.int64)
        ok = boxes.valid_boxes(xyxy) & np.isfinite(scores)
        if self.cfg.min_box_height > 0:
            ok &= (xyxy[:, 3] - xyxy[:, 1]) >= self.cfg.min_box_height
        if features is not None:
            features = np.asarray(features, dtype=np.float32)
            if features.ndim != 2 or len(features) != n:
                raise ValueError(f"features must have shape ({n}, D), got {features.shape}")
            if self.feature_dim is not None and features.shape[1] != self.feature_dim and n:
                raise ValueError(f"features have {features.shape[1]} dimensions, earlier frames had {self.feature_dim}")
            if n:
                self.feature_dim = features.shape[1]
            norms = np.linalg.norm(features, axis=1)
            usable = np.isfinite(features).all(axis=1) & (norms > 1e-12)
            # A box below min_confidence is never matched by appearance, so its feature row is not looked at.
            ok &= usable | (scores < self.cfg.min_confidence)
            # Unit length is the contract; re-normalising costs little and makes cosine = dot product.
            features = features / np.where(usable, norms, 1.0)[:, None]
            features[~usable] = 0.0  # unread rows of weak boxes: zeros rather than NaN, should anything look
        dets = _Detections(xyxy, scores, classes, features, np.arange(n, dtype=np.int64))
        return dets if ok.all() else dets.take(ok)
