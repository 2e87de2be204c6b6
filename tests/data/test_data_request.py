"""Validation of a DataRequest: every bad field is a DataError that says how to fix it."""

from __future__ import annotations

from pathlib import Path

import pytest

from robaudit.data import DataRequest, default_data_dir, describe_dataset, load_data
from robaudit.data.request import ResolvedSource, resolve_source
from robaudit.errors import DataError


def test_default_data_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROBAUDIT_DATA_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "explicit"
    monkeypatch.delenv("ROBAUDIT_DATA_DIR")
    assert default_data_dir() == tmp_path / "xdg" / "robaudit" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "robaudit" / "data"


def test_sources_resolve_to_their_kind(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"")
    assert resolve_source(DataRequest("CIFAR10", data_dir=tmp_path)).name == "cifar10"
    assert resolve_source(DataRequest("fashion-mnist", data_dir=tmp_path)).path == tmp_path.resolve()
    assert resolve_source(DataRequest(f"imagefolder:{tmp_path}")).kind == "imagefolder"
    assert resolve_source(DataRequest(f"ImageNet:{tmp_path}")) == ResolvedSource("imagenet", "imagenet", tmp_path.resolve())
    assert resolve_source(DataRequest(f"imagenet-a:{tmp_path}")).name == "imagenet-a"
    assert resolve_source(DataRequest(f"imagenet-r:{tmp_path}")).name == "imagenet-r"
    assert resolve_source(DataRequest(str(tmp_path / "d.npz"))).kind == "tensors"
    assert resolve_source(DataRequest("digits")).path is None


@pytest.mark.parametrize(
    ("request_", "in_message", "in_fix"),
    [
        (DataRequest("cifar-10"), "did you mean 'cifar10'", "--data"),
        (DataRequest("imagenet"), "imagenet needs a folder path", "--dataset imagenet:PATH"),
        (DataRequest("imagenet-a:"), "imagenet-a: needs a folder path", "--dataset imagenet-a:PATH"),
        (DataRequest("imagenet-r"), "imagenet-r needs a folder path", "--dataset imagenet-r:PATH"),
        (DataRequest("imagenett"), "unknown dataset 'imagenett'", "imagenet:PATH"),
        (DataRequest(""), "no dataset given", "--data"),
        (DataRequest("imagefolder:"), "needs a folder path", "imagefolder:PATH"),
        (DataRequest("digits", split="val"), "unknown split 'val'", "--split test or --split train"),
        (DataRequest("digits", n_samples=0), "positive integer, got 0", "--n-samples"),
        (DataRequest("digits", n_samples=-5), "positive integer, got -5", "--n-samples"),
        (DataRequest("digits", convert_channels="grey"), "did you mean 'gray'", "--convert-channels gray"),
        (DataRequest("digits", resize=(32,)), "two positive integers", "--resize N or HxW"),
        (DataRequest("digits", resize=(0, 32)), "two positive integers", "--resize N or HxW"),
    ],
)
def test_bad_requests_are_explained(request_: DataRequest, in_message: str, in_fix: str) -> None:
    for call in (describe_dataset, load_data):
        with pytest.raises(DataError) as err:
            call(request_)
        assert in_message in err.value.message
        assert err.value.fix and in_fix in err.value.fix


def test_folder_without_prefix_suggests_imagefolder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_data(DataRequest(str(tmp_path)))
    assert err.value.fix == f"pass --dataset imagefolder:{tmp_path}"
