"""`mot-reid batch`: many inputs through the `track` code path, one output folder each, a manifest over all.

Each input gets DIR/<name>/tracks.json (+ tracks.txt, tracks.mp4 when asked). DIR/batch.json records every
input (done, failed with its one-line reason, skipped, or pending) and is rewritten atomically after each
input, so an interrupted batch leaves a true manifest and a re-run picks up where it stopped.
"""

from __future__ import annotations

import glob as globlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from mot_reid import atomic
from mot_reid.errors import UserError
from mot_reid.mot_data import VIDEO_SUFFIXES
from mot_reid.sources import STREAM_SCHEMES

MANIFEST = "batch.json"


@dataclass
class Job:
    name: str
    source: str
    out_dir: str
    tracker_pairs: list[str] = field(default_factory=list)
    mot_txt: bool = False
    save_video: bool = False

    def remove_leftovers(self) -> None:
        """Temp files of this input's outputs left by a worker that was killed mid-write (Ray kills its actors)."""
        for path in self.outputs().values():
            atomic.remove_leftovers(path)

    def outputs(self) -> dict[str, str]:
        out = {"tracks": str(Path(self.out_dir) / "tracks.json")}
        if self.mot_txt:
            out["mot_txt"] = str(Path(self.out_dir) / "tracks.txt")
        if self.save_video:
            out["video"] = str(Path(self.out_dir) / "tracks.mp4")
        return out


def expand_sources(specs: list[str]) -> list[str]:
    """Video files, folders of videos or sequences, MOT sequence folders, text files of paths/URLs, globs."""
    found: list[str] = []
    for spec in specs:
        path = Path(spec)
        if spec.lower().startswith(STREAM_SCHEMES):
            found.append(spec)
        elif not path.exists() and any(ch in spec for ch in "*?["):
            matches = sorted(globlib.glob(spec))
            if not matches:
                raise UserError(f"nothing matches {spec}")
            found += expand_sources(matches)
        elif not path.exists():
            raise UserError(f"source not found: {spec}")
        elif path.is_file() and path.suffix.lower() == ".txt":
            lines = [ln.strip() for ln in path.read_text().splitlines()]
            found += expand_sources([ln for ln in lines if ln and not ln.startswith("#")])
        elif path.is_dir() and not _is_sequence(path):
            inner = sorted(p for p in path.iterdir()
                           if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or (p.is_dir() and _is_sequence(p)))
            # A plain folder of images is one input, as `mot-reid track` reads it.
            found += [str(p) for p in inner] or [spec]
        else:
            found.append(spec)
    return list(dict.fromkeys(found))


def _is_sequence(path: Path) -> bool:
    return (path / "seqinfo.ini").is_file() or (path / "img1").is_dir()


def input_names(sources: list[str]) -> list[str]:
    """A folder name per input: the video's stem or the sequence's name, made unique with -2, -3, ..."""
    names, seen = [], {}
    for source in sources:
        base = Path(source.rstrip("/")).stem if "://" not in source else source.split("://", 1)[1]
        base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base) or "input"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def is_complete(job: Job) -> bool:
    """A finished input: a complete tracks.json and every other output asked for."""
    outputs = job.outputs()
    try:
        done = json.loads(Path(outputs["tracks"]).read_text()).get("complete") is True
    except (OSError, ValueError):
        return False
    return done and all(Path(p).is_file() for p in outputs.values())


def setup_worker(cfg):
    """Per worker, once: the config and the loaded detector and embedder."""
    from mot_reid.track_job import build_models

    started = time.perf_counter()
    models = build_models(cfg)
    return cfg, models, time.perf_counter() - started


def track_job(state, job: Job) -> dict:
    """Track one input; failures come back as a record with the one-line reason, never as an exception."""
    from mot_reid.track_job import track

    cfg, models, load_seconds = state
    outputs = job.outputs()
    job.remove_leftovers()
    record = {"name": job.name, "source": job.source, "outputs": outputs, "model_load_seconds": load_seconds}
    try:
        result, _ = track(job.source, cfg, outputs["tracks"], job.tracker_pairs, mot_txt=outputs.get("mot_txt"),
                          save_video=outputs.get("video"), show_progress=False, models=models,
                          write_interrupted=False)
    except Exception as exc:  # noqa: BLE001 - any failure of one input is recorded and the batch goes on
        return {**record, "status": "failed", "reason": _one_line(exc)}
    record |= {"frames": result.frames, "tracks": len(result.collector.tracks), "seconds": round(result.seconds, 3),
               "fps": round(result.frames / result.seconds, 2) if result.seconds else None}
    if result.stopped_by == "interrupt":
        return {**record, "status": "interrupted"}
    if result.stopped_by == "source-error":
        return {**record, "status": "failed", "reason": "the source failed part way (partial tracks.json kept)"}
    return {**record, "status": "done"}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, UserError) else f"{type(exc).__name__}: {text}"


class Manifest:
    """DIR/batch.json: the run's settings once, and one record per input, rewritten after each change."""

    def __init__(self, out_dir: Path, jobs: list[Job], header: dict):
        self.path = out_dir / MANIFEST
        self.header = header
        self.records = {j.name: {"name": j.name, "source": j.source, "status": "pending", "outputs": j.outputs()}
                        for j in jobs}

    def update(self, record: dict) -> None:
        self.records[record["name"]] = record
        self.write()

    def write(self, finished: bool = False) -> None:
        counts = {}
        for r in self.records.values():
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        atomic.write_json(self.path, {**self.header, "finished": finished, "counts": counts,
                                      "inputs": list(self.records.values())})
