"""A crafted CIFAR data directory must not be able to run code through pickle."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from dataset_writers import balanced_labels, dumps_py2, random_images, write_cifar10

from robaudit.data import DataRequest, load_data
from robaudit.data.safe_pickle import check_pickle_file
from robaudit.errors import DataError


class _MkdirPayload:
    """Unpickling this calls os.mkdir(target): a harmless, observable stand-in for any code."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.target,)


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE


def _stack_global_with_decoys(target: Path) -> bytes:
    """posix.mkdir via STACK_GLOBAL, with allowed names pushed last and popped before use."""
    return (
        b"\x80\x04" + _u(os.mkdir.__module__) + _u("mkdir") + _u("numpy") + _u("ndarray")
        + b"00"  # POP POP: the stack top is posix, mkdir again
        + b"\x93" + _u(str(target)) + b"\x85R."  # STACK_GLOBAL, TUPLE1, REDUCE, STOP
    )  # fmt: skip


def _stack_global_through_memo(target: Path) -> bytes:
    """posix.mkdir via STACK_GLOBAL whose operands are read back from the memo."""
    return (
        b"\x80\x04" + _u(os.mkdir.__module__) + b"\x94" + b"0"  # push, MEMOIZE as 0, POP
        + _u("mkdir") + b"\x94" + b"0"  # push, MEMOIZE as 1, POP
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + _u(str(target)) + b"\x85R."
    )  # fmt: skip


def _payloads(target: Path) -> dict[str, bytes]:
    batch = {"data": _MkdirPayload(target), "labels": [0]}
    return {
        "GLOBAL (protocol 2)": pickle.dumps(batch, protocol=2),
        "STACK_GLOBAL (protocol 4)": pickle.dumps(batch, protocol=4),
        "STACK_GLOBAL (protocol 5)": pickle.dumps(batch, protocol=5),
        "STACK_GLOBAL behind popped decoys": _stack_global_with_decoys(target),
        "STACK_GLOBAL through the memo": _stack_global_through_memo(target),
        "INST opcode": b"(" + _u(str(target)) + b"i" + os.mkdir.__module__.encode() + b"\nmkdir\n.",
    }


PAYLOAD_NAMES = list(_payloads(Path("x")))


@pytest.mark.parametrize("kind", PAYLOAD_NAMES)
def test_payload_runs_under_plain_pickle(tmp_path: Path, kind: str) -> None:
    """Sanity check of the fixtures: each payload really runs code when unpickled."""
    target = tmp_path / "pwned"
    pickle.loads(_payloads(target)[kind])
    assert target.is_dir()


@pytest.mark.parametrize("kind", PAYLOAD_NAMES)
@pytest.mark.parametrize("victim", ["test_batch", "batches.meta"])
def test_malicious_cifar_file_is_refused_and_does_not_run(
    tmp_path: Path, rng: np.random.Generator, kind: str, victim: str
) -> None:
    data_dir = tmp_path / "data"
    folder = write_cifar10(data_dir, (random_images(rng, 10, 3, 32, 32).reshape(10, -1), balanced_labels(rng, 10, 10)))
    target = tmp_path / "pwned"
    (folder / victim).write_bytes(_payloads(target)[kind])

    for download in (False, True):
        with pytest.raises(DataError) as err:
            load_data(DataRequest("cifar10", data_dir=data_dir, download=download))
        assert "refusing to unpickle" in err.value.message and victim in err.value.message
        assert not target.exists()


def test_refusal_names_the_global(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(_payloads(tmp_path / "pwned")["STACK_GLOBAL through the memo"])
    with pytest.raises(DataError, match=rf"references the global {os.mkdir.__module__}\.mkdir"):
        check_pickle_file(path, "CIFAR-10 file")


def test_malicious_train_batch_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    rows = [(random_images(rng, 5, 3, 32, 32).reshape(5, -1), balanced_labels(rng, 5, 10)) for _ in range(5)]
    folder = write_cifar10(tmp_path / "data", rows[0], rows)
    target = tmp_path / "pwned"
    (folder / "data_batch_3").write_bytes(_payloads(target)["GLOBAL (protocol 2)"])
    assert len(load_data(DataRequest("cifar10", data_dir=tmp_path / "data"))) == 5  # test split untouched
    with pytest.raises(DataError, match="data_batch_3"):
        load_data(DataRequest("cifar10", data_dir=tmp_path / "data", split="train"))
    assert not target.exists()


def test_python2_builtin_names_are_checked_after_mapping(tmp_path: Path) -> None:
    # protocol-2 pickles name Python 2 modules; pickle maps __builtin__ to builtins before importing
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02c__builtin__\neval\nU\x041+1\x85R.")
    with pytest.raises(DataError, match=r"builtins\.eval"):
        check_pickle_file(path, "CIFAR-10 file")


@pytest.mark.parametrize("opcode", [b"\x82\x01", b"P1\n"])  # EXT1 1, PERSID
def test_extension_registry_and_persistent_ids_are_refused(tmp_path: Path, opcode: bytes) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(b"\x80\x02" + opcode + b".")
    with pytest.raises(DataError, match="opcode"):
        check_pickle_file(path, "CIFAR-10 file")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5, "py2"])
def test_numpy_batches_pass_the_check(tmp_path: Path, protocol: int | str) -> None:
    batch = {
        "batch_label": "training batch 1 of 5",
        "labels": [1, 2, np.int64(3)],  # a numpy scalar among the labels
        "data": np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072),
        "filenames": ["a.png", "b.png", "c.png"],
    }
    path = tmp_path / "batch"
    if protocol == "py2":
        batch["labels"] = [1, 2, 3]
        path.write_bytes(dumps_py2(batch))
    else:
        path.write_bytes(pickle.dumps(batch, protocol=int(protocol)))
    check_pickle_file(path, "CIFAR-10 file")  # no exception


def test_long_binput_memo_keys_are_tracked(tmp_path: Path) -> None:
    # LONG_BINPUT / LONG_BINGET with 4-byte keys resolve like the short forms
    key = struct.pack("<I", 70000)
    payload = b"\x80\x04" + _u("posix") + b"r" + key + b"0" + _u("system") + b"r" + struct.pack("<I", 70001) + b"0"
    payload += b"j" + key + b"j" + struct.pack("<I", 70001) + b"\x93" + _u("true") + b"\x85R."
    path = tmp_path / "test_batch"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=r"posix\.system"):
        check_pickle_file(path, "CIFAR-10 file")


def test_files_fetched_by_download_are_checked_before_unpickling(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    target = tmp_path / "pwned"

    def fake_download(url: str, download_root: str, **kwargs: object) -> None:
        folder = write_cifar10(Path(download_root), (random_images(rng, 5, 3, 32, 32).reshape(5, -1), np.arange(5)))
        (folder / "test_batch").write_bytes(_payloads(target)["STACK_GLOBAL (protocol 4)"])

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake_download)
    with pytest.raises(DataError, match="refusing to unpickle"):
        load_data(DataRequest("cifar10", data_dir=tmp_path / "data", download=True))
    assert not target.exists()
