"""Torch-free multi-object tracking: DeepSORT semantics with StrongSORT/ByteTrack/OC-SORT switches.

Feed it boxes, scores and (optionally) L2-normalised appearance features from any detector:

    from trackers import DeepSort, TrackerConfig
    tracker = DeepSort(TrackerConfig(), frame_rate=30)
    out = tracker.update(xyxy, scores, classes=None, features=None, frame=None)
    out.track_id, out.xyxy, out.score, out.cls, out.det_index

Never imports torch or mot_reid (numpy, scipy and OpenCV only).
"""

from trackers.config import TrackerConfig
from trackers.deepsort import DeepSort, Tracks

__all__ = ["DeepSort", "TrackerConfig", "Tracks"]
