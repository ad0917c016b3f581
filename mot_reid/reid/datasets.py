"""ReID dataset readers: Market-1501, DukeMTMC-reID, MSMT17 (V1/V2), a plain folder, mot2reid output.

Every reader returns a `ReIDDataset` whose `train`, `query` and `gallery` are lists of
`(path, pid, camid)`; train pids are relabelled 0..num_train_pids-1 (what the classifier needs),
query/gallery keep the dataset's own pids (what the evaluation protocol compares). Camera ids
are 0-based.

Conventions kept from the reference readers: Market/Duke junk images (pid -1) are dropped,
Market distractors (pid 0) stay in the gallery; MSMT17's official training set is the union of
`list_train.txt` and `list_val.txt` (same identities, 1041 of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mot_reid.errors import UserError

Item = tuple[str, int, int]  # (image path, pid, camid)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# `0002_c1s1_000451_03.jpg` (Market), `0001_c2_f0046182.jpg` (Duke), `0003_c2_000123.jpg` (mot2reid, folder).
PID_CAM = re.compile(r"^(-?\d+)_c(\d+)")

# Folder names a user may point at, or that may sit inside the given root.
DEFAULT_SUBDIRS = {
    "market1501": ("Market-1501-v15.09.15", "Market-1501", "market1501"),
    "dukemtmc": ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc"),
    "msmt17": ("MSMT17_V2", "MSMT17_V1", "MSMT17", "msmt17"),
    "mot2reid": (),
    "folder": (),
}
# MSMT17 keeps its images under version-specific folder names.
MSMT17_DIRS = (("mask_train_v2", "mask_test_v2"), ("train", "test"))
MARKET_SPLITS = ("bounding_box_train", "query", "bounding_box_test")
FOLDER_SPLITS = ("train", "query", "gallery")

DATASET_NAMES = tuple(DEFAULT_SUBDIRS)


@dataclass
class ReIDDataset:
    name: str
    root: str
    train: list[Item] = field(default_factory=list)
    query: list[Item] = field(default_factory=list)
    gallery: list[Item] = field(default_factory=list)
    num_train_pids: int = 0

    def summary(self) -> str:
        def ids(items):
            return len({pid for _, pid, _ in items})

        def cams(items):
            return len({cam for _, _, cam in items})

        return (f"{self.name} at {self.root}: train {ids(self.train)} ids / {len(self.train)} images, "
                f"query {ids(self.query)} ids / {len(self.query)} images, "
                f"gallery {ids(self.gallery)} ids / {len(self.gallery)} images, "
                f"{cams(self.query + self.gallery)} cameras")


def relabel(items: list[Item]) -> tuple[list[Item], int]:
    """Map the pids of `items` to 0..n-1 in sorted order; return the new items and n."""
    mapping = {pid: label for label, pid in enumerate(sorted({pid for _, pid, _ in items}))}
    return [(path, mapping[pid], cam) for path, pid, cam in items], len(mapping)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_pid_cam_folder(folder: Path, drop_junk: bool = True) -> list[Item]:
    """Items from files named `PID_cCAM...`; camera numbers in names are 1-based.

    Files that do not follow the pattern are ignored (Market ships a Thumbs.db); pid -1 is junk.
    """
    items = []
    for path in _images(folder):
        match = PID_CAM.match(path.name)
        if not match:
            continue
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == -1 and drop_junk:
            continue
        if pid < -1 or cam < 1:
            raise UserError(f"{path}: pid {pid} / camera {cam} out of range (expected pid >= 0, camera >= 1)")
        items.append((str(path), pid, cam - 1))
    return items


def _resolve_root(root: Path, name: str, marker: tuple[str, ...]) -> Path:
    """`root` itself if it holds the dataset's folders, else a known sub-folder of it that does."""
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    for candidate in (root, *(root / sub for sub in DEFAULT_SUBDIRS[name])):
        if candidate.is_dir() and any((candidate / m).exists() for m in marker):
            return candidate
    raise UserError(f"{root} is not a {name} dataset: expected {', '.join(marker)} inside it "
                    f"(or inside one of {', '.join(DEFAULT_SUBDIRS[name]) or 'no sub-folder'})")


def _market_style(root: Path, name: str) -> ReIDDataset:
    base = _resolve_root(root, name, MARKET_SPLITS)
    splits = {}
    for split in MARKET_SPLITS:
        folder = base / split
        if not folder.is_dir():
            raise UserError(f"{name} dataset at {base} lacks the folder {split}/")
        splits[split] = read_pid_cam_folder(folder)
    # A training-only set (mot2reid --test-fraction 0) or a test-only one (--test-fraction 1) is fine;
    # a query without a gallery, or nothing at all, is a broken copy.
    empty = [split for split in MARKET_SPLITS if not splits[split]]
    if len(empty) == 3 or (bool(splits["query"]) != bool(splits["bounding_box_test"])):
        raise UserError(f"{base / empty[0]} holds no images named PID_cCAM_*.jpg")
    train, n = relabel(splits["bounding_box_train"])
    return ReIDDataset(name, str(base), train, splits["query"], splits["bounding_box_test"], n)


def _msmt17(root: Path) -> ReIDDataset:
    base = _resolve_root(root, "msmt17", ("list_train.txt",))
    for train_dir, test_dir in MSMT17_DIRS:
        if (base / train_dir).is_dir() and (base / test_dir).is_dir():
            break
    else:
        raise UserError(f"MSMT17 at {base} has neither mask_train_v2/ + mask_test_v2/ (V2) nor train/ + test/ (V1)")

    def read_list(list_name: str, image_dir: str) -> list[Item]:
        list_path = base / list_name
        if not list_path.is_file():
            raise UserError(f"MSMT17 list file {list_path} is missing")
        items = []
        for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                rel, pid = parts[0], int(parts[1])
                # `0000/0000_000_01_0303morning_0015_0.jpg`: pid, index, camera (1-based), ...
                cam = int(Path(rel).name.split("_")[2])
            except (IndexError, ValueError):
                raise UserError(f"{list_path}:{lineno}: expected 'PID/PID_NNN_CC_....jpg PID', got {line!r}") from None
            items.append((str(base / image_dir / rel), pid, cam - 1))
        if not items:
            raise UserError(f"MSMT17 list file {list_path} is empty")
        return items

    train_items = read_list("list_train.txt", train_dir)
    if (base / "list_val.txt").is_file():
        train_items += read_list("list_val.txt", train_dir)
    train, n = relabel(train_items)
    return ReIDDataset("msmt17", str(base), train, read_list("list_query.txt", test_dir),
                       read_list("list_gallery.txt", test_dir), n)


def _folder(root: Path) -> ReIDDataset:
    """`root/{train,query,gallery}/PID_cCAM_*.jpg` (any of them), or a flat folder used as train."""
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    present = [s for s in FOLDER_SPLITS if (root / s).is_dir()]
    if not present:
        splits = {"train": read_pid_cam_folder(root)}
    else:
        splits = {s: read_pid_cam_folder(root / s) for s in present}
    if not any(splits.values()):
        raise UserError(f"{root} holds no images named PID_cCAM_*.jpg (in train/, query/, gallery/ or itself)")
    if bool(splits.get("query")) != bool(splits.get("gallery")):
        raise UserError(f"{root}: query/ and gallery/ must both hold images, or neither")
    train, n = relabel(splits.get("train", []))
    return ReIDDataset("folder", str(root), train, splits.get("query", []), splits.get("gallery", []), n)


def load_dataset(root: str | Path, name: str) -> ReIDDataset:
    """Read the dataset `name` (market1501, dukemtmc, msmt17, folder, mot2reid) under `root`."""
    root = Path(root).expanduser()
    if name in ("market1501", "dukemtmc", "mot2reid"):
        return _market_style(root, name)
    if name == "msmt17":
        return _msmt17(root)
    if name == "folder":
        return _folder(root)
    raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def open_image(path: str) -> Image.Image:
    """Decode one image as RGB, or say which file is broken."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, ImportError) as exc:
        # ImportError: once ultralytics is imported it patches PIL.Image.open to retry unknown files
        # with the optional pi-heif plugin, which fails with ImportError where that is not installed.
        raise UserError(f"cannot read image {path}: {exc}") from None


class ImageDataset:
    """A torch-style map dataset over `(path, pid, camid)` items: yields `(image, pid, camid, index)`."""

    def __init__(self, items: list[Item], transform=None):
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, pid, camid = self.items[index]
        image = open_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid, index
