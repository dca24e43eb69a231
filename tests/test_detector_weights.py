"""Detector weights other than the bundled ones are a pickle: they load only when the user vouches for them.

A ``.pt`` checkpoint is unpickled by ultralytics, and unpickling runs whatever code the file holds. These
tests write such a file (its code would leave a marker file) and check that every way in refuses it before
anything is read, naming the keys that vouch for weights; and that the ways to vouch (the file's sha256, or
``trust_weights``) and a copy of the bundled weights still load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from depth_pose.detect import PoseDetector, default_weights, resolve_weights, sha256
from depth_pose.errors import InputError
from generation.render.label import Labeller


class _Payload:
    """Unpickling this runs ``exec`` of a line that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def evil_weights(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    return path, marker


def test_a_pickle_is_refused_before_it_is_read(tmp_path: Path):
    path, marker = evil_weights(tmp_path)
    with pytest.raises(
        InputError,
        match=r"detector\.weights=.*evil\.pt.*pickle.*detector\.weights_sha256=.*"
        r"detector\.trust_weights=true",
    ):
        PoseDetector(path)
    with pytest.raises(InputError, match=r"render\.yolo_weights=.*render\.yolo_trust_weights=true"):
        Labeller(path)
    assert not marker.exists()
    # the refusal names the file's own sha256, so a user who made it can vouch for exactly this file
    with pytest.raises(InputError, match=sha256(path)):
        resolve_weights(path)


def test_vouching_takes_the_files_sha256_or_an_explicit_trust(tmp_path: Path):
    path, marker = evil_weights(tmp_path)
    with pytest.raises(InputError, match=r"its sha256 .* is not the expected 000000000000"):
        resolve_weights(path, "0" * 64)
    assert resolve_weights(path, sha256(path).upper()) == path  # vouched for: its path comes back
    assert resolve_weights(path, trusted=True) == path
    with pytest.raises(InputError, match=r"detector\.trust_weights must be true or false, got 'yes'"):
        PoseDetector(path, trust_weights="yes")
    assert not marker.exists()


def test_the_bundled_weights_and_a_copy_load_without_vouching(tmp_path: Path):
    copy = tmp_path / "my_copy.pt"
    shutil.copyfile(default_weights(), copy)
    assert resolve_weights(None) == default_weights()
    assert resolve_weights(copy) == copy
    det = PoseDetector(copy)
    assert det.weights == copy
