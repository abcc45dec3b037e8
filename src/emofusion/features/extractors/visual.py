"""Facial extractors: frames sampled from the video, the largest face cropped, one descriptor each.

Pipeline shared by all visual extractors (`VisualExtractor.extract`):

1. `sample_frames`: OpenCV reads the video between ``start`` and ``end`` and keeps ``fps``
   frames per second (every frame when the video has fewer).
2. `FaceDetector`: the frontal-face Haar cascade shipped with OpenCV
   (``cv2.data.haarcascades``) finds faces on a copy scaled to ``detect_width`` pixels; the
   largest one is cropped (square around its centre) and resized to ``face_size`` pixels.
3. A descriptor per crop: HOG (``face_hog``), uniform-LBP histograms (``face_lbp``) or a
   ResNet-50 embedding (``face_resnet``).

The result is ``(T_faces, d)``: frames without a face are skipped, never filled in, and counted
(``stats = {"frames": sampled, "faces": T_faces}``); when no sampled frame has a face the
utterance fails. Needs the ``vision`` extra (``pip install 'emofusion[vision]'``);
``face_resnet`` also needs ``[torchvision]`` and a local weights file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from emofusion.errors import ConfigError, require
from emofusion.features.extractors.base import (
    Extracted,
    ExtractionFailed,
    Extractor,
    Item,
    existing_file,
    segment,
)

Box = tuple[int, int, int, int]
"""Face rectangle ``(x, y, width, height)`` in pixels."""


def _cv2() -> Any:
    return require("cv2", "vision", "Reading video and detecting faces")


def _positions(capture: Any, start: float, end: float | None) -> tuple[float, int, int | None]:
    """``(video_fps, first_frame, stop_frame)``; seeks ``capture`` to ``first_frame``."""
    cv2 = _cv2()
    video_fps = capture.get(cv2.CAP_PROP_FPS)
    video_fps = video_fps if video_fps and math.isfinite(video_fps) and video_fps > 0 else 25.0
    first = int(round(start * video_fps))
    stop = None if end is None else int(math.ceil(end * video_fps))
    if first and not capture.set(cv2.CAP_PROP_POS_FRAMES, first):
        for _ in range(first):  # the backend cannot seek: decode up to the start
            capture.grab()
    return video_fps, first, stop


def sample_frames(path: str, start: float = 0.0, end: float | None = None,
                  fps: float = 5.0) -> Iterator[np.ndarray]:
    """BGR frames ``(height, width, 3)`` uint8 of ``[start, end)`` seconds, ``fps`` per second."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ExtractionFailed("cannot open the video file",
                               "check that the file is a video OpenCV can decode (e.g. MP4/AVI)",
                               path)
    try:
        video_fps, index, stop = _positions(capture, start, end)
        step, next_pick = max(video_fps / fps, 1.0), float(index)
        while (stop is None or index < stop) and capture.grab():
            if index + 1e-6 >= next_pick:
                ok, frame = capture.retrieve()
                if ok:
                    yield frame
                next_pick += step
            index += 1
    finally:
        capture.release()


class FaceDetector:
    """Largest frontal face with OpenCV's shipped Haar cascade.

    Parameters:
        detect_width: frames wider than this are scaled down before detection (speed).
        min_face: smallest face side as a fraction of the frame's shorter side.
        min_neighbors: Haar ``minNeighbors``; higher means fewer false detections.
    """

    def __init__(self, detect_width: int = 320, min_face: float = 0.1, min_neighbors: int = 5):
        self.detect_width, self.min_face, self.min_neighbors = detect_width, min_face, min_neighbors

    @cached_property
    def _cascade(self) -> Any:
        cv2 = _cv2()
        cascade = cv2.CascadeClassifier(
            cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if cascade.empty():
            raise ConfigError("OpenCV's haarcascade_frontalface_default.xml could not be loaded; "
                              "reinstall opencv-python (pip install 'emofusion[vision]')")
        return cascade

    def largest_face(self, frame: np.ndarray) -> Box | None:
        """The largest face of a BGR ``frame`` in frame pixels, or None."""
        cv2 = _cv2()
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.detect_width / gray.shape[1])
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        side = max(int(self.min_face * min(gray.shape)), 20)
        faces = self._cascade.detectMultiScale(gray, scaleFactor=1.1,
                                               minNeighbors=self.min_neighbors,
                                               minSize=(side, side))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda box: box[2] * box[3])
        return tuple(int(round(v / scale)) for v in (x, y, w, h))  # type: ignore[return-value]


def crop_face(frame: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Square crop around ``box``'s centre, clipped to the frame, resized to ``size`` x ``size``."""
    cv2 = _cv2()
    x, y, w, h = box
    half, cx, cy = max(w, h) / 2, x + w / 2, y + h / 2
    top, left = max(int(cy - half), 0), max(int(cx - half), 0)
    bottom = min(int(cy + half), frame.shape[0])
    right = min(int(cx + half), frame.shape[1])
    return cv2.resize(frame[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)


class VisualExtractor(Extractor):
    """Face crops of sampled frames -> one descriptor per face: ``(T_faces, width)``.

    Subclasses implement `describe` (one crop) or `describe_all` (all crops at once).
    ``color`` selects BGR crops ``(size, size, 3)`` instead of grayscale ``(size, size)``.
    """

    source: ClassVar[str] = "visual"
    kind: ClassVar[str] = "sequence"
    chunk_size: ClassVar[int] = 4
    color: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = (
        "fps", "face_size", "detect_width", "min_face", "min_neighbors")

    def __init__(self, fps: float = 5.0, face_size: int = 64, detect_width: int = 320,
                 min_face: float = 0.1, min_neighbors: int = 5):
        if fps <= 0 or face_size < 16:
            raise ConfigError(f"{self.name}: need fps > 0 and face_size >= 16 "
                              f"(got fps={fps}, face_size={face_size})")
        self.fps, self.face_size = float(fps), int(face_size)
        self.detect_width, self.min_face = int(detect_width), float(min_face)
        self.min_neighbors = int(min_neighbors)
        self._detector = FaceDetector(self.detect_width, self.min_face, self.min_neighbors)

    def face_crops(self, item: Item) -> tuple[list[np.ndarray], int]:
        """Face crops of the item's sampled frames and the number of frames sampled."""
        start, end = segment(item)
        path = existing_file(item, "video_path", "video")
        cv2, crops, frames = _cv2(), [], 0
        for frame in sample_frames(path, start, end, self.fps):
            frames += 1
            box = self._detector.largest_face(frame)
            if box is not None:
                crop = crop_face(frame, box, self.face_size)
                crops.append(crop if self.color else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
        if frames == 0:
            raise ExtractionFailed("no video frames in the utterance's segment",
                                   "check the video file and the start/end times", path)
        if not crops:
            raise ExtractionFailed(f"no face detected in any of the {frames} sampled frames",
                                   "check that the video shows a frontal face, or drop this "
                                   "utterance (or lower min_face / min_neighbors)", path)
        return crops, frames

    def extract(self, item: Item) -> Extracted:
        crops, frames = self.face_crops(item)
        return Extracted(self.describe_all(crops), {"frames": frames, "faces": len(crops)})

    def compute(self, item: Item) -> np.ndarray:
        return self.extract(item).array

    def describe(self, crop: np.ndarray) -> np.ndarray:
        """Descriptor ``(width,)`` of one face crop."""
        raise NotImplementedError

    def describe_all(self, crops: list[np.ndarray]) -> np.ndarray:
        """Descriptors ``(len(crops), width)`` float32."""
        return np.stack([self.describe(crop) for crop in crops]).astype(np.float32)


class FaceHOG(VisualExtractor):
    """Histogram of oriented gradients (``skimage.feature.hog``, L2-Hys) of the grayscale crop.

    Width ``blocks**2 * cells_per_block**2 * orientations`` with
    ``blocks = face_size // pixels_per_cell - cells_per_block + 1``: 1764 with the defaults
    (64 px crop, 8 px cells, 2x2 blocks, 9 orientations).
    """

    name = "face_hog"
    param_names = VisualExtractor.param_names + (
        "orientations", "pixels_per_cell", "cells_per_block")

    def __init__(self, orientations: int = 9, pixels_per_cell: int = 8, cells_per_block: int = 2,
                 **detection: Any):
        super().__init__(**detection)
        self.orientations, self.pixels_per_cell = int(orientations), int(pixels_per_cell)
        self.cells_per_block = int(cells_per_block)
        blocks = self.face_size // self.pixels_per_cell - self.cells_per_block + 1
        if blocks < 1:
            raise ConfigError(f"face_hog: face_size={self.face_size} is too small for "
                              f"{pixels_per_cell}-pixel cells in {cells_per_block}-cell blocks")
        self.width = blocks * blocks * self.cells_per_block ** 2 * self.orientations

    def describe(self, crop: np.ndarray) -> np.ndarray:
        feature = require("skimage.feature", "vision", "HOG face descriptors")
        return feature.hog(crop, orientations=self.orientations,
                           pixels_per_cell=(self.pixels_per_cell,) * 2,
                           cells_per_block=(self.cells_per_block,) * 2,
                           block_norm="L2-Hys", feature_vector=True)


class FaceLBP(VisualExtractor):
    """Uniform LBP (``skimage.feature.local_binary_pattern``, rotation-invariant uniform codes).

    The crop is split into ``grid`` x ``grid`` cells; each cell gives a normalised histogram of
    the ``points + 2`` codes. Width ``grid**2 * (points + 2)``: 160 with the defaults.
    """

    name = "face_lbp"
    param_names = VisualExtractor.param_names + ("points", "radius", "grid")

    def __init__(self, points: int = 8, radius: float = 1.0, grid: int = 4, **detection: Any):
        super().__init__(**detection)
        self.points, self.radius, self.grid = int(points), float(radius), int(grid)
        if not 1 <= self.grid <= self.face_size // 4:
            raise ConfigError(f"face_lbp: grid={grid} must be between 1 and face_size // 4")
        self.width = self.grid * self.grid * (self.points + 2)

    def describe(self, crop: np.ndarray) -> np.ndarray:
        feature = require("skimage.feature", "vision", "LBP face descriptors")
        codes = feature.local_binary_pattern(crop, self.points, self.radius, method="uniform")
        bins = self.points + 2
        histograms = [np.bincount(cell.astype(np.int64).ravel(), minlength=bins)[:bins] / cell.size
                      for rows in np.array_split(codes, self.grid, axis=0)
                      for cell in np.array_split(rows, self.grid, axis=1)]
        return np.concatenate(histograms)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load_resnet_state(path: str | Path) -> dict[str, Any]:
    """Backbone tensors of a ResNet checkpoint: unwraps ``state_dict``/``model`` entries, strips
    ``module.`` prefixes (DataParallel) and drops the ``fc.`` classifier."""
    torch = require("torch", "torchvision", "Loading ResNet weights")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"face_resnet: {path} does not contain a state_dict")
    state = {name.removeprefix("module."): tensor for name, tensor in state.items()}
    return {name: tensor for name, tensor in state.items() if not name.startswith("fc.")}


def build_resnet50(state: dict[str, Any], source: str = "") -> Any:
    """torchvision ResNet-50 with ``fc`` replaced by identity (2048-d output), in eval mode."""
    torch = require("torch", "torchvision", "The face_resnet extractor")
    torchvision = require("torchvision", "torchvision", "The face_resnet extractor")
    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"face_resnet: {source or 'the weights'} are not ResNet-50 weights "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return model.eval()


class FaceResNet(VisualExtractor):
    """ImageNet ResNet-50 embedding (global average pool, 2048-d) of each 224x224 colour crop.

    ``weights`` is a local file with a ResNet-50 state_dict (e.g. torchvision's
    ``resnet50-11ad3fa6.pth``, downloaded beforehand on a machine with internet): nothing is
    downloaded here. Needs ``pip install 'emofusion[torchvision]'``.
    """

    name = "face_resnet"
    color = True
    chunk_size = 2
    width = 2048
    param_names = VisualExtractor.param_names + ("weights",)

    def __init__(self, weights: str | None = None, face_size: int = 224, **detection: Any):
        if not weights:
            raise ConfigError(
                "face_resnet needs weights='<file>': a local ResNet-50 state_dict such as "
                "torchvision's resnet50-11ad3fa6.pth (download it on a machine with internet; "
                "emofusion never downloads weights)")
        if not Path(weights).is_file():
            raise ConfigError(f"face_resnet: weights file {weights} not found")
        require("torchvision", "torchvision", "The face_resnet extractor")
        super().__init__(face_size=face_size, **detection)
        self.weights = str(Path(weights).resolve())
        self._model: Any = None

    def prepare(self) -> None:
        if self._model is None:
            self._model = build_resnet50(load_resnet_state(self.weights), self.weights)

    def describe_all(self, crops: list[np.ndarray]) -> np.ndarray:
        self.prepare()
        torch = require("torch", "torchvision", "The face_resnet extractor")
        rgb = np.stack(crops)[..., ::-1].astype(np.float32) / 255.0
        batch = torch.from_numpy(
            np.ascontiguousarray(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            return torch.cat([self._model(part) for part in batch.split(16)]).numpy()
