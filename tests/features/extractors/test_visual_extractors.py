"""Visual extractors on generated videos of a real face (scikit-image's astronaut) and no face."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage")

from extractor_test_media import face_image, write_video  # noqa: E402

from emofusion.errors import ConfigError, MissingExtraError  # noqa: E402
from emofusion.features.extractors import ExtractionFailed, build_extractor  # noqa: E402
from emofusion.features.extractors.visual import (  # noqa: E402
    FaceDetector,
    load_resnet_state,
    sample_frames,
)

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {"face": write_video(folder / "face.avi", face_frames=12, blank_frames=8),
            "blank": write_video(folder / "blank.avi", face_frames=0, blank_frames=10)}


def test_shipped_haar_cascade_finds_the_astronaut_face():
    box = FaceDetector().largest_face(face_image(480))
    assert box is not None
    x, y, w, h = box
    assert 60 < w < 160 and 100 < x + w / 2 < 260 and 40 < y + h / 2 < 160


def test_sample_frames_respects_fps_and_segment(videos):
    assert len(list(sample_frames(videos["face"], fps=10))) == 20
    assert len(list(sample_frames(videos["face"], fps=5))) == 10
    assert len(list(sample_frames(videos["face"], 0.5, 1.5, fps=10))) == 10


@pytest.mark.parametrize(("name", "width"), [("face_hog", 1764), ("face_lbp", 160)])
def test_faces_only_frames_without_face_are_counted(videos, name, width):
    extractor = build_extractor(name, {"fps": 10})
    result = extractor.checked(extractor.extract({"video_path": videos["face"]}))
    assert result.array.shape == (12, width) and extractor.width == width
    assert result.stats == {"frames": 20, "faces": 12}
    assert result.array.dtype == np.float32 and np.isfinite(result.array).all()
    cut = extractor.extract({"video_path": videos["face"], "start": 0.5, "end": 1.5})
    assert cut.stats == {"frames": 10, "faces": 7} and cut.array.shape == (7, width)


def test_lbp_cells_are_normalised_histograms(videos):
    features = build_extractor("face_lbp", {"grid": 3, "points": 8})(
        {"video_path": videos["face"]})
    cells = features.reshape(len(features), 9, 10)
    assert np.allclose(cells.sum(axis=2), 1.0, atol=1e-5)


def test_hog_size_parameters_change_the_width():
    assert build_extractor("face_hog", {"face_size": 48, "pixels_per_cell": 8}).width == (
        5 * 5 * 4 * 9)


@pytest.mark.parametrize(("video", "message"), [
    ("blank", "no face detected in any of the 5 sampled frames"),
    ("missing", "not found"),
    ("garbage", "cannot open"),
])
def test_videos_without_faces_or_unreadable_fail(videos, tmp_path, video, message):
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"not a video" * 50)
    paths = {**videos, "missing": str(tmp_path / "none.avi"), "garbage": str(garbage)}
    [result] = build_extractor("face_hog").extract_batch([{"video_path": paths[video]}])
    assert isinstance(result, ExtractionFailed) and message in result.reason


def test_face_resnet_requires_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="weights"):
        build_extractor("face_resnet")
    with pytest.raises(ConfigError, match="not found"):
        build_extractor("face_resnet", {"weights": str(tmp_path / "none.pth")})


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed")
def test_face_resnet_without_torchvision_names_the_extra(tmp_path):
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"0")
    with pytest.raises(MissingExtraError, match=r"emofusion\[torchvision\]"):
        build_extractor("face_resnet", {"weights": str(weights)})


def test_resnet_checkpoint_is_unwrapped(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(2), "module.fc.weight":
                               torch.zeros(3), "module.fc.bias": torch.zeros(1)}}, path)
    assert list(load_resnet_state(path)) == ["conv1.weight"]


@pytest.mark.skipif(not HAS_TORCHVISION, reason="face_resnet needs torchvision")
def test_face_resnet_loads_local_weights_and_embeds(tmp_path, videos):
    import torch
    import torchvision

    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    extractor = build_extractor("face_resnet", {"weights": str(path), "fps": 2})
    features = extractor({"video_path": videos["face"]})
    assert features.shape[1] == 2048 and len(features) >= 1
    broken = tmp_path / "broken.pth"
    torch.save({"conv1.weight": torch.zeros(2)}, broken)
    with pytest.raises(ConfigError, match="not ResNet-50"):
        build_extractor("face_resnet", {"weights": str(broken)}).prepare()
