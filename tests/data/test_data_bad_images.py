"""Corrupt, truncated and decompression-bomb images: one line naming the file and exit 2, or with
--skip-bad-images a recorded skip. Never a traceback or exit 3."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import jsonschema
import pytest
from imagenet_writers import PIXEL_READOUT_ARCH, bomb_png, jpeg_bytes, write_pixel_readout, write_spike_png
from PIL import Image

from robaudit.cli.main import main
from robaudit.data import DataRequest, load_data
from robaudit.data.decoding import BadImage, decode_rgb
from robaudit.errors import DataError
from robaudit.exitcodes import ExitCode
from robaudit.results import schema_text

GOOD = 4


def _bad_files() -> dict[str, bytes]:
    whole = jpeg_bytes(seed=1)
    return {
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,  # a JPEG marker, then noise
        "truncated.jpg": whole[: len(whole) // 2],
        "bomb.png": bomb_png(30_000, 30_000),
    }


def _folder(root: Path, bad: dict[str, bytes], synset_layout: bool) -> Path:
    """GOOD readable PNGs plus the ``bad`` files, in one class folder."""
    cls = root / ("n01440764" if synset_layout else "tench")
    for i in range(GOOD):
        write_spike_png(cls / f"good_{i}.png", {0: 255})  # the readout model predicts class 0: all right
    for name, content in bad.items():
        (cls / name).write_bytes(content)
    return cls


@pytest.mark.parametrize("name", ["corrupt.jpg", "truncated.jpg", "bomb.png"])
def test_each_bad_file_is_a_bad_image_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_bad_files()[name])
    with pytest.raises(BadImage) as caught:
        decode_rgb(path)
    assert caught.value.path == str(path)
    assert ("decompression bomb" in caught.value.reason) == (name == "bomb.png")


def test_the_bomb_is_refused_from_its_header_even_with_pils_limit_off(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(30_000, 30_000))
    assert path.stat().st_size < 4096
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(BadImage, match="declares 30000×30000 = 900,000,000 pixels"):
        decode_rgb(path)


def test_pils_warning_zone_is_an_error_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    write_spike_png(path, {0: 1})  # 19×19 = 361 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 1× < 361 < 2×: PIL only warns
    with pytest.raises(BadImage, match="decompression bomb"):
        decode_rgb(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 361)
    assert decode_rgb(path).size == (19, 19)


def _run(model: Path, dataset: str, out: Path, *extra: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["run", str(model), "--arch", PIXEL_READOUT_ARCH, "--dataset", dataset, "--probes", "clean",
                     "--mean", "0,0,0", "--std", "1,1,1", "--out", str(out), "--no-report", "--threads", "1",
                     *extra])
    text = err.getvalue()
    assert "Traceback" not in text, text
    return code, text


@pytest.mark.parametrize("name", ["corrupt.jpg", "truncated.jpg", "bomb.png"])
@pytest.mark.parametrize("prefix", ["imagefolder", "imagenet"])
def test_the_cli_stops_with_one_line_naming_the_file(tmp_path: Path, prefix: str, name: str) -> None:
    cls = _folder(tmp_path / "data", {name: _bad_files()[name]}, synset_layout=True)
    code, text = _run(write_pixel_readout(tmp_path / "m.safetensors", 1000 if prefix == "imagenet" else 1),
                      f"{prefix}:{tmp_path / 'data'}", tmp_path / "out")
    lines = [line for line in text.splitlines() if line.startswith("robaudit: error")]
    assert code == ExitCode.USAGE and len(lines) == 1, text
    assert f"could not decode image {cls / name}" in lines[0] and "--skip-bad-images" in lines[0]


@pytest.mark.parametrize("prefix", ["imagefolder", "imagenet"])
def test_skip_bad_images_records_them_and_audits_the_rest(tmp_path: Path, prefix: str) -> None:
    bad = _bad_files()
    cls = _folder(tmp_path / "data", bad, synset_layout=True)
    model = write_pixel_readout(tmp_path / "m.safetensors", 1000 if prefix == "imagenet" else 1)

    code, text = _run(model, f"{prefix}:{tmp_path / 'data'}", tmp_path / "out", "--skip-bad-images")

    assert code == ExitCode.OK, text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    jsonschema.validate(results, json.loads(schema_text()))
    data = results["data"]
    skipped = {Path(s["path"]).name: s["reason"] for s in data["skipped_images"]}
    assert set(skipped) == set(bad) and all(str(cls) in s["path"] for s in data["skipped_images"])
    assert "decompression bomb" in skipped["bomb.png"] and "truncated or corrupt" in skipped["truncated.jpg"]
    assert data["n_available"] == GOOD + len(bad) and data["n_used"] == GOOD
    assert any("skipped 3 of 7" in w for w in data["warnings"])
    assert sum(f"skipped image {cls}" in line for line in text.splitlines()) == 3


def test_skipping_every_selected_image_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.png").write_bytes(bomb_png())
    with pytest.raises(DataError, match="none of the 1 selected images"):
        load_data(DataRequest(f"imagefolder:{root}", skip_bad_images=True))
