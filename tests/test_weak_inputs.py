"""Issue 18's weak cases: the dp-eval JSON Lines reader on awkward and hostile files (BOM and CRLF read
normally, a non-UTF-8 byte costs only its line, an empty file / a JSON array / repeated ids are refused naming
the file and the lines, null ids, huge numbers and deep nesting are line errors, not crashes), dp-predict's
max_frames, dp-train's logger=none (tests/test_train.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval_cli import line, person

from depth_pose.eval.io import EvalInputError, read_keypoints_jsonl


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bom_and_crlf_are_read_normally(tmp_path: Path) -> None:
    text = line("a", person(10.0)) + "\r\n" + line("b", person(12.0)) + "\r\n"
    people = read_keypoints_jsonl(write(tmp_path / "x.jsonl", b"\xef\xbb\xbf" + text.encode()))
    assert people.ids == ["a", "b"] and not people.skipped and people.n_input == 2


def test_a_non_utf8_byte_costs_only_its_line(tmp_path: Path) -> None:
    data = (
        (line("a", person()) + "\n").encode() + b'{"id": "b\xff"}\n' + (line("c", person()) + "\n").encode()
    )
    people = read_keypoints_jsonl(write(tmp_path / "x.jsonl", data))
    assert people.ids == ["a", "c"]
    assert people.skipped == [("line 2", "not UTF-8 (byte 10 of the line)")]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "has no people"),
        (b"\n  \n\r\n", "has no people"),
        (
            b'{"id": "a", "keypoints_xyc": [\n{"id": "b"}\n',
            r"has no people: none of its 2 lines is usable \(line 1: ",
        ),
        ("[1,2]\n".encode("utf-16"), r"is UTF-16 \(its byte-order mark\): save it as UTF-8"),
        (json.dumps([json.loads(line("a", person()))]).encode(), "JSON array, not JSON Lines"),
    ],
)
def test_files_refused_as_a_whole(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path / "x.jsonl", content)
    with pytest.raises(EvalInputError, match=message) as e:
        read_keypoints_jsonl(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_repeated_ids_are_refused_naming_the_lines(tmp_path: Path) -> None:
    rows = [line("a", person()), line("b", person()), line("a", person()), line("b", person())]
    path = write(tmp_path / "x.jsonl", "\n".join(rows).encode())
    with pytest.raises(EvalInputError, match=r"repeats ids: 'a' on lines 1 and 3, 'b' on lines 2 and 4"):
        read_keypoints_jsonl(path)


def test_hostile_lines_are_line_errors(tmp_path: Path) -> None:
    good = json.loads(line("ok", person()))
    big = dict(good, id="big")
    rows = [
        json.dumps(good),
        json.dumps(dict(good, id=None)),  # null id
        json.dumps(big).replace('"gt_z_m": 10.0', '"gt_z_m": 1' + "0" * 400),  # 10**400
        "[" * 100_000 + "]" * 100_000,  # nested far past the parser's recursion limit
        '{"id": "long", "pad": "' + "x" * 1_100_000 + '"}',
    ]
    people = read_keypoints_jsonl(write(tmp_path / "x.jsonl", "\n".join(rows).encode()))
    assert people.ids == ["ok"]
    why = dict(people.skipped)
    assert set(why) == {"line 2", "line 3", "line 4", "line 5"}
    assert "'id' must be a string or an integer" in why["line 2"]
    assert "gt_z_m" in why["line 3"]
    assert "nested too deeply" in why["line 4"] or "not JSON" in why["line 4"]
    assert "longer than" in why["line 5"]


def test_dp_eval_on_an_empty_file_exits_2_and_changes_nothing(tmp_path: Path, tiny_model: Path) -> None:
    path = write(tmp_path / "empty.jsonl", b"")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    r = subprocess.run(
        [sys.executable, "-m", "depth_pose.cli.eval", f"keypoints={path}",
         f"out={tmp_path / 'o' / 'p.jsonl'}", f"ckpt={tiny_model}", "plots=false"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    lines = [x for x in r.stderr.splitlines() if x.startswith("dp-eval: error:")]
    assert r.returncode == 2 and len(lines) == 1 and "no people" in lines[0], r.stderr[-2000:]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("value", [0, -1, "many"])
def test_dp_predict_refuses_max_frames_below_one(tmp_path: Path, value) -> None:
    """max_frames <= 0 used to process everything (0) or one frame (-1): now a clear error before any work."""
    from helpers import compose

    from depth_pose.predict.run import PredictError, predict

    cfg = compose(
        "predict", [f"source={tmp_path / 'none.mp4'}", f"out={tmp_path / 'o'}", f"max_frames={value}"]
    )
    with pytest.raises(PredictError, match="max_frames must be a positive integer"):
        predict(cfg)
    assert not (tmp_path / "o").exists()
