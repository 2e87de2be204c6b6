"""Image folders of PNGs, prepared with the model's data config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_writers import write_png
from PIL import Image
from torchvision import transforms as T

from robaudit.data import DataRequest, describe_dataset, load_data
from robaudit.errors import DataError
from robaudit.models.audit_model import DataConfig


def _tree(root: Path, rng: np.random.Generator, sizes: dict[str, list[tuple[int, int]]]) -> dict[str, np.ndarray]:
    """Write root/<class>/img_<i>.png with the given (H, W); return {relative path: H×W×3 pixels}."""
    written = {}
    for cls, shapes in sizes.items():
        for i, (h, w) in enumerate(shapes):
            pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            write_png(root / cls / f"img_{i}.png", pixels)
            written[f"{cls}/img_{i}.png"] = pixels
    return written


def test_same_size_images_round_trip_in_sorted_order(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    written = _tree(root, rng, {"dog": [(12, 10)] * 3, "cat": [(12, 10)] * 2, "ant": [(12, 10)] * 1})

    audit = load_data(DataRequest(f"imagefolder:{root}"), model_channels=3)

    order = sorted(written)  # ImageFolder: classes sorted, files sorted within a class
    assert order[0] == "ant/img_0.png"
    assert audit.ids == [f"test:{i}" for i in range(6)]
    expected = torch.stack([torch.from_numpy(written[p]).permute(2, 0, 1) for p in order]).float() / 255
    assert torch.equal(audit.x, expected)  # PNG is lossless: exact uint8/255
    assert audit.y.tolist() == [0, 1, 1, 2, 2, 2]
    assert audit.info.class_names == ["ant", "cat", "dog"] and audit.info.num_classes == 3
    assert audit.info.mean is None and audit.info.image_size == (12, 10)
    assert audit.provenance["conversions"] == [] and audit.provenance["path"] == str(root.resolve())


def test_data_config_resizes_and_centre_crops(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    written = _tree(root, rng, {"a": [(40, 30), (25, 50)], "b": [(16, 16), (64, 20)]})
    config = DataConfig(input_size=(3, 16, 16), interpolation="bicubic", crop_pct=0.875)

    audit = load_data(DataRequest(f"imagefolder:{root}"), model_channels=3, data_config=config)

    assert audit.x.shape == (4, 3, 16, 16) and audit.x.dtype == torch.float32
    assert 0.0 <= float(audit.x.min()) and float(audit.x.max()) <= 1.0
    # the same pipeline as timm's eval transform: shorter side to int(16 / 0.875) = 18, crop 16×16
    reference = T.Compose([T.Resize(18, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(16), T.ToTensor()])
    first = reference(Image.fromarray(written["a/img_0.png"]))
    assert torch.equal(audit.x[0], first)
    assert audit.provenance["conversions"] == ["resize shorter side to 18 bicubic, centre crop 16×16 (crop_pct 0.875)"]
    assert audit.info.image_size == (16, 16)


def test_non_square_input_size(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    _tree(root, rng, {"a": [(40, 30)], "b": [(25, 50)]})
    audit = load_data(DataRequest(f"imagefolder:{root}"), data_config=DataConfig(input_size=(3, 14, 21), crop_pct=1.0))
    assert audit.x.shape == (2, 3, 14, 21)


def test_differing_sizes_without_input_size_need_resize(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    _tree(root, rng, {"a": [(20, 20)], "b": [(24, 18)]})
    with pytest.raises(DataError) as err:
        load_data(DataRequest(f"imagefolder:{root}"), data_config=DataConfig(input_size=None))
    text = err.value.one_line()
    assert "differ in size" in text and "20×20" in text and "24×18" in text and "--resize" in text

    audit = load_data(DataRequest(f"imagefolder:{root}", resize=(8, 9)))
    assert audit.x.shape == (2, 3, 8, 9)
    assert audit.provenance["conversions"] == ["resize each image to 8×9 bilinear (antialias)"]
    assert describe_dataset(DataRequest(f"imagefolder:{root}", resize=(8, 9))).image_size == (8, 9)


def test_gray_model_needs_conversion(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a" / "g.png", rng.integers(0, 256, size=(6, 6), dtype=np.uint8))  # a gray PNG
    with pytest.raises(DataError, match="has 3 channels but the model expects 1"):
        load_data(DataRequest(f"imagefolder:{root}"), model_channels=1)
    audit = load_data(DataRequest(f"imagefolder:{root}", convert_channels="gray"), model_channels=1)
    gray = torch.from_numpy(np.array(Image.open(root / "a" / "g.png"))).float() / 255
    assert torch.allclose(audit.x[0, 0], gray, atol=1e-6)  # decoded as RGB, back to the same gray


def test_only_selected_images_are_decoded(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    _tree(root, rng, {"a": [(8, 8)] * 10, "b": [(8, 8)] * 10})
    broken = root / "b" / "img_5.png"  # sorted position 15
    broken.write_bytes(b"not a png")

    with pytest.raises(DataError) as err:
        load_data(DataRequest(f"imagefolder:{root}"))
    assert str(broken) in err.value.message

    loaded = 0
    for seed in range(6):
        try:
            audit = load_data(DataRequest(f"imagefolder:{root}", n_samples=6, seed=seed))
        except DataError as exc:
            assert str(broken) in exc.message
            continue
        loaded += 1
        assert "test:15" not in audit.ids and audit.provenance["class_counts"] == [3, 3]
    assert loaded > 0


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("no_classes", "has no class sub-folders"),
        ("empty_classes", "has no images"),
    ],
)
def test_unusable_folders_are_data_errors(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "imgs"
    if layout == "no_classes":
        root.mkdir()
        (root / "loose.png").write_bytes(b"")
    elif layout == "empty_classes":
        (root / "a").mkdir(parents=True)
        (root / "b").mkdir()
        (root / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=message):
        load_data(DataRequest(f"imagefolder:{root}"))


def test_unknown_interpolation_is_a_data_error(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    _tree(root, rng, {"a": [(8, 8)]})
    with pytest.raises(DataError, match="unknown interpolation 'random'"):
        load_data(DataRequest(f"imagefolder:{root}"), data_config=DataConfig((3, 8, 8), interpolation="random"))


def test_describe_imagefolder_reads_class_names_only(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "imgs"
    _tree(root, rng, {"zebra": [(4, 4)], "ant": [(4, 4)]})
    (root / "zebra" / "img_0.png").write_bytes(b"corrupt, but describe does not decode it")
    info = describe_dataset(DataRequest(f"imagefolder:{root}"))
    assert info.class_names == ["ant", "zebra"] and info.num_classes == 2
    assert info.channels == 3 and info.image_size is None and info.mean is None
