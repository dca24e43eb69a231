"""The border input (issue 19): per joint, how close it lies to the image frame (``features.border: true``).

The encoding itself (border -> 1, centre -> 0, unknown frame -> zeros, flip, augmentation), the data path
(shards' ``img_w``/``img_h`` to the training batch) and every entry point: what reaches the real model is read
with a forward hook on it and compared with :class:`depth_pose.features.Normaliser` on the same people.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from conftest import write_toy_set
from helpers import compose
from test_eval_cli import K, line, person
from test_gravity_inputs import FixedDetector, write_image

from depth_pose.features import (
    BORDER_DIM,
    FLIP_INDEX,
    Augment,
    Normaliser,
    flip,
)
from depth_pose.keypoints import INDEX
from depth_pose.models.module import DepthModule

W, H = 1242, 375  # the image the people of test_eval_cli.person are seen in (K's principal point near centre)
KT = torch.tensor(K, dtype=torch.float32).expand(3, 3, 3)


def people(n: int = 3) -> torch.Tensor:
    """(n, 17, 3) standing people at 8, 10, 12 m (inside the frame)."""
    return torch.tensor([person(z) for z in (8.0, 10.0, 12.0)[:n]], dtype=torch.float32)


def border_part(feats: torch.Tensor) -> torch.Tensor:
    return feats[:, -BORDER_DIM:]


# ---------------------------------------------------------------- the encoding


def test_border_centre_outside_unseen_and_unknown():
    norm = Normaliser(border=True)
    assert norm.in_dim == Normaliser().in_dim + BORDER_DIM == 72
    kp = people()
    la, ra, nose, lw = INDEX["left_ankle"], INDEX["right_ankle"], INDEX["nose"], INDEX["left_wrist"]
    kp[0, la, 1] = H  # on the bottom edge (a detector's clamp)
    kp[0, ra, 1] = H + 40.0  # below the image: outside counts as on the border
    kp[1, lw, 0] = 0.0  # on the left edge, but not visible
    kp[1, lw, 2] = 0.05
    feats, _, mask = norm(kp, KT, image_wh=torch.tensor([W, H]))
    b = border_part(feats)
    assert b[0, la] == 1.0 and b[0, ra] == 1.0
    assert b[:, nose].abs().max() == 0.0  # the head, ~150 px from every edge: far from the frame
    assert not mask[1, lw] and b[1, lw] == 0.0  # unseen joints carry no proximity
    assert (b[:, -1] == 1.0).all()  # frame known
    assert (b[2, :-1] == 0.0).all()  # a person well inside the frame: no joint near it
    ramp = kp[2:3].clone()
    ramp[0, la, 1] = H - 1.0  # 1 px inside: close to 1, less than on the edge
    near = border_part(norm(ramp, KT[:1], image_wh=torch.tensor([W, H]))[0])[0, la]
    assert 0.5 < float(near) < 1.0
    for unknown in (None, torch.tensor([float("nan"), float("nan")]), torch.tensor([0.0, 375.0])):
        assert (border_part(norm(kp, KT, image_wh=unknown)[0]) == 0).all()  # masked: flag 0 too
    mixed = torch.tensor([[W, H], [float("nan"), H], [W, H]], dtype=torch.float32)
    bm = border_part(norm(kp, KT, image_wh=mixed)[0])
    assert (bm[1] == 0).all() and torch.equal(bm[[0, 2]], b[[0, 2]])  # per row
    same = Normaliser()(kp, KT)[0]  # the other inputs are those of a model without the border input
    assert torch.equal(feats[:, : same.shape[1]], same)


def test_flip_permutes_the_border_with_its_joints():
    norm = Normaliser(border=True)
    kp = people()
    kp[0, INDEX["left_ankle"], 1] = H
    kp[1, INDEX["right_shoulder"], 0] = W - 0.5
    obs = norm.observe(kp, KT, image_wh=torch.tensor([W, H]))
    b = border_part(norm.encode(obs)[0])
    bf = border_part(norm.encode(flip(obs))[0])
    idx = list(FLIP_INDEX) + [BORDER_DIM - 1]
    assert torch.equal(bf, b[:, idx]) and bf[0, INDEX["right_ankle"]] == 1.0
    half = flip(obs, torch.tensor([True, False, False]))
    bh = border_part(norm.encode(half)[0])
    assert torch.equal(bh[0], b[0, idx]) and torch.equal(bh[1:], b[1:])


def test_augmentation_keeps_the_border_consistent():
    norm = Normaliser(border=True)
    kp = people().repeat(200, 1, 1)
    kp[:, INDEX["left_ankle"], 1] = H  # every person with an ankle on the frame
    obs = norm.observe(kp, KT[:1].expand(600, 3, 3), image_wh=torch.tensor([W, H]))
    g = torch.Generator().manual_seed(0)
    dropped = Augment(p_drop=1.0, max_drop=4, p_hide_frame=0.0)(obs, generator=g)
    b = border_part(norm.encode(dropped)[0])
    assert ((b[:, :-1] > 0) <= dropped.mask).all() and (b[:, -1] == 1).all()  # a dropped joint: no proximity
    lost = ~dropped.mask[:, INDEX["left_ankle"]]
    assert (
        lost.any()
        and (b[lost, INDEX["left_ankle"]] == 0).all()
        and (b[~lost, INDEX["left_ankle"]] == 1).all()
    )
    out = Augment(p_truncate=0.5, p_hide_frame=0.0)(obs, generator=g)
    b = border_part(norm.encode(out)[0])
    cut = ~out.mask[:, INDEX["right_ankle"]]
    known = b[:, -1] == 1
    # legs cut off by augmentation: no image edge lies there, so the frame is unknown on those rows
    assert 0.3 < cut.float().mean() < 0.7 and torch.equal(known, ~cut) and (b[cut] == 0).all()
    hidden = Augment(p_hide_frame=0.5)(obs, generator=torch.Generator().manual_seed(1))
    share = (border_part(norm.encode(hidden)[0])[:, -1] == 0).float().mean()
    assert 0.4 < float(share) < 0.6
    plain = Normaliser().observe(
        kp, KT[:1].expand(600, 3, 3)
    )  # without hiding, the border changes no other augmentation
    aug = Augment(p_drop=0.5, p_truncate=0.5, p_flip=0.5, p_hide_frame=0.0)
    a1 = aug(plain, generator=torch.Generator().manual_seed(2))
    a2 = aug(obs, generator=torch.Generator().manual_seed(2))
    assert a1.border is None and torch.equal(a1.mask, a2.mask) and torch.equal(a1.xy, a2.xy)


def test_config_dict_and_compatibility():
    norm = Normaliser(border=True)
    d = norm.to_dict()
    assert d["border"] is True and d["in_dim"] == 72
    assert Normaliser.from_dict(d) == norm
    Normaliser().check_compatible(d)
    old = {k: v for k, v in Normaliser().to_dict().items() if k != "border"}  # saved before the key existed
    assert Normaliser.from_dict(old).border is False
    Normaliser().check_compatible(old)
    with pytest.raises(ValueError, match="in_dim"):
        Normaliser().check_compatible(d | {"in_dim": 54})
    with pytest.raises(ValueError, match="border: true needs the normalised"):
        Normaliser(name="raw_pixels", border=True)
    cfg = compose("train", ["features.border=true"])
    assert cfg.features.border is True and cfg.features.augment.p_hide_frame == 0.25
    assert compose("train").features.border is False


# ---------------------------------------------------------------- data and a trained border model


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    return write_toy_set(tmp_path_factory.mktemp("border_set"), 1200, seed=3)


def test_datamodule_hands_the_image_size_to_the_training_step(toy_dir):
    from depth_pose.data import DeviceDataModule

    dm = DeviceDataModule(dir=toy_dir, batch_size=256, val_fraction=0.2, test_fraction=0.1)
    dm.setup()
    train, val = dm.splits["train"], dm.splits["val"]
    assert torch.equal(
        train["image_wh"], torch.tensor([W, H], dtype=torch.float32).expand_as(train["image_wh"])
    )
    known = torch.isfinite(val["image_wh"]).all(1)
    assert known[0::4].all() and known[1::4].all() and not known[2::4].any() and not known[3::4].any()
    m = DepthModule(features={"name": "normalised", "border": True})
    batch = next(iter(dm.train_dataloader()))
    feats, _, _ = m.features(batch, train=False)
    assert (border_part(feats)[:, -1] == 1).all()
    assert (border_part(feats)[:, :-1] > 0.99).any(
        1
    ).float().mean() > 0.1  # the toy set's near people are cut
    vfeats, _, _ = m.features(next(iter(dm.val_dataloader())), train=False)
    assert torch.equal(border_part(vfeats)[:, -1], known.float())


def test_dp_train_features_border(toy_dir, tmp_path):
    """``dp-train features.border=true``: the config reaches the model and its checkpoint (the 72 inputs)."""
    from hydra.core.hydra_config import HydraConfig

    from depth_pose.predictor import DepthPredictor
    from depth_pose.train import train

    overrides = [f"data.dir={toy_dir}", "features.border=true", "logger=none", "model=mlp_small"]
    overrides += ["trainer=cpu", "trainer.max_epochs=1", "progress=false", f"paths.output_dir={tmp_path}"]
    cfg = compose("train", overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    metrics, objs = train(cfg)
    assert np.isfinite(metrics["val/ale"]) and objs["model"].normaliser.in_dim == 72
    pred = DepthPredictor.load(tmp_path / "checkpoints" / "last.ckpt")
    assert pred.uses_border and pred.metadata["normalisation"]["border"] is True


@pytest.fixture(scope="module")
def border_model(toy_dir, tmp_path_factory) -> Path:
    """A small border model trained for a few steps on the toy set, exported like the shipped model."""
    from depth_pose.data import DeviceDataModule
    from depth_pose.predictor import export_model

    L.seed_everything(0)
    dm = DeviceDataModule(dir=toy_dir, batch_size=256, val_fraction=0.1, test_fraction=0.0)
    model = DepthModule(net={"width": 32, "depth": 2}, features={"name": "normalised", "border": True})
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    return export_model(model, tmp_path_factory.mktemp("bmodel") / "border.safetensors", {"note": "test"})


@pytest.fixture(scope="module")
def bpred(border_model):
    from depth_pose.predictor import DepthPredictor

    p = DepthPredictor.load(border_model)
    assert p.uses_border and p.normaliser.border
    return p


@contextmanager
def model_inputs() -> Iterator[list[torch.Tensor]]:
    """The features every DepthModule (the real model, wherever the command loaded it) is called with."""
    seen: list[torch.Tensor] = []

    def hook(module, args, output):
        if isinstance(module, DepthModule):
            seen.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def expected(pred, kp, image_wh) -> torch.Tensor:
    """The features the normaliser makes of ``kp`` (N, 17, 3) with ``K`` and ``image_wh``."""
    kp = torch.as_tensor(np.asarray(kp, np.float32))
    wh = None if image_wh is None else torch.as_tensor(np.asarray(image_wh, np.float32))
    return pred.normaliser(kp, KT[:1].expand(len(kp), 3, 3), image_wh=wh)[0]


def test_predictor_takes_image_wh(bpred, tiny_model):
    from depth_pose.predictor import DepthPredictor

    kp = people().numpy()
    kp[0, INDEX["left_ankle"], 1] = H
    with model_inputs() as seen:
        out = bpred.predict(kp, K, image_wh=(W, H))
    assert len(seen) == 2  # the keypoints and their mirror image (flip TTA)
    torch.testing.assert_close(seen[0], expected(bpred, kp, (W, H)))
    assert (border_part(seen[0])[:, -1] == 1).all() and border_part(seen[0])[0, INDEX["left_ankle"]] == 1
    none = bpred.predict(kp, K)
    nan = bpred.predict(kp, K, image_wh=np.full((3, 2), np.nan))
    np.testing.assert_array_equal(none.z_m, nan.z_m)
    assert not np.allclose(out.z_m, none.z_m)  # the frame changes this model's answer
    with pytest.raises(ValueError, match="image_wh must have shape"):
        bpred.predict(kp, K, image_wh=np.ones((2, 2)))
    with pytest.raises(ValueError, match="positive"):
        bpred.predict(kp, K, image_wh=(W, -1))
    plain = DepthPredictor.load(tiny_model)  # no border input: the size is ignored
    assert not plain.uses_border
    np.testing.assert_array_equal(plain.predict(kp, K, image_wh=(W, H)).z_m, plain.predict(kp, K).z_m)


def test_old_model_json_without_border_key(tiny_model, tmp_path):
    from depth_pose.predictor import DepthPredictor

    meta = json.loads(tiny_model.with_suffix(".json").read_text())
    meta["normalisation"].pop("border")
    feats = meta["hparams"].get("features") or {}
    meta["hparams"]["features"] = {k: v for k, v in feats.items() if k != "border"}
    old = tmp_path / "old.safetensors"
    old.write_bytes(tiny_model.read_bytes())
    old.with_suffix(".json").write_text(json.dumps(meta))
    pred = DepthPredictor.load(old)
    assert not pred.uses_border and pred.normaliser.in_dim == 54
    kp = people().numpy()
    a = pred.predict(kp, K)
    b = pred.predict(kp, K, image_wh=(W, H))
    np.testing.assert_array_equal(a.z_m, b.z_m)
    np.testing.assert_array_equal(a.sigma_m, b.sigma_m)


# ---------------------------------------------------------------- entry points


def run_eval(tmp_path: Path, ckpt, *overrides: str) -> tuple[dict, list[dict]]:
    from depth_pose.evaluate import evaluate

    out = tmp_path / "o" / "pred.jsonl"
    cfg = compose("eval", [f"out={out}", f"ckpt={ckpt}", "progress=false", "plots=false", *overrides])
    metrics = evaluate(cfg)
    return metrics, [json.loads(s) for s in out.read_text().splitlines()]


def test_dp_eval_jsonl_image_wh(tmp_path, border_model, bpred):
    cut = person(6.0)
    cut[INDEX["left_ankle"]][1] = cut[INDEX["right_ankle"]][1] = float(H)  # legs cut, clamped onto the edge
    src = tmp_path / "in.jsonl"
    src.write_text(
        "\n".join(
            [
                line("with", cut, image_wh=[W, H]),
                line("without", cut),
                line("null", person(9.0), image_wh=None),
                line("bad", person(9.0), image_wh=[W, 0]),
                line("text", person(9.0), image_wh="1242x375"),
            ]
        )
        + "\n"
    )
    with model_inputs() as seen:
        metrics, rows = run_eval(tmp_path, border_model, f"keypoints={src}")
    assert [r["id"] for r in rows] == ["with", "without", "null"] and metrics["exit_code"] == 3
    why = {s["where"]: s["why"] for s in metrics["skipped"]}
    msg = "image_wh must be [width, height] in pixels (two positive numbers up to 1e+06), got "
    assert why == {"line 4": msg + "[1242, 0]", "line 5": msg + "'1242x375'"}
    kp = np.asarray([cut, cut, person(9.0)], np.float32)
    wh = np.array([[W, H], [np.nan, np.nan], [np.nan, np.nan]], np.float32)
    torch.testing.assert_close(seen[0], expected(bpred, kp, wh))
    b = border_part(seen[0])
    assert b[0, -1] == 1 and b[0, INDEX["left_ankle"]] == 1 and (b[1:] == 0).all()  # masked without image_wh
    assert [r["frame_known"] for r in rows] == [True, False, False]
    assert rows[0]["z_pred_m"] != rows[1]["z_pred_m"]
    np.testing.assert_allclose(
        [r["z_pred_m"] for r in rows], bpred.predict(kp, K, image_wh=wh).z_m, rtol=1e-4, atol=1e-4
    )


class CutDetector(FixedDetector):
    """The gravity tests' fixed people, the nearest one with its ankles clamped onto a 1242 x 375 frame."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.dets.keypoints[2, [INDEX["left_ankle"], INDEX["right_ankle"]], 1] = H


def test_dp_eval_images_give_the_image_size(tmp_path, border_model, bpred):
    folder = tmp_path / "set"
    write_image(folder / "a.png", size=(W, H))
    (folder / "gt.json").write_text(json.dumps({"image": "a.png", "K": K, "people": [{"gt_z_m": 6.0}]}))
    with model_inputs() as seen:
        _, rows = run_eval(
            tmp_path, border_model, f"images={folder}", f"detector._target_={__name__}.CutDetector"
        )
    assert len(rows) == 1 and rows[0]["frame_known"] is True
    kp = CutDetector().dets.keypoints[2:3]
    torch.testing.assert_close(seen[0], expected(bpred, kp, (W, H)))
    assert border_part(seen[0])[0, INDEX["left_ankle"]] == 1 and border_part(seen[0])[0, -1] == 1


def run_predict(tmp_path: Path, pred, src: Path, *overrides: str) -> tuple[dict, list[dict]]:
    from depth_pose.predict.run import predict

    out = tmp_path / "out"
    cfg = compose(
        "predict",
        [f"source={src}", f"out={out}", "progress=false", "save=false", "zoom.enabled=false",
         "tracking.enabled=false", "intrinsics.fx=721.5", "intrinsics.cx=609.6", "intrinsics.cy=172.9",
         *overrides],
    )  # fmt: skip
    summary = predict(cfg, depth_model=pred, detector=CutDetector())
    return summary, [json.loads(s) for s in (out / "predictions.jsonl").read_text().splitlines()]


def test_dp_predict_image_gives_the_frame_size(tmp_path, bpred):
    src = write_image(tmp_path / "img" / "a.png", size=(W, H))
    with model_inputs() as seen:
        summary, recs = run_predict(tmp_path, bpred, src)
    assert summary["model_uses_border"] is True and len(recs) == 5
    kp = CutDetector().dets.keypoints
    torch.testing.assert_close(seen[0], expected(bpred, kp, (W, H)))
    assert (border_part(seen[0])[:, -1] == 1).all() and border_part(seen[0])[2, INDEX["left_ankle"]] == 1
    np.testing.assert_allclose(
        [r["z_raw_m"] for r in recs], bpred.predict(kp, K, image_wh=(W, H)).z_m, rtol=1e-5
    )


@pytest.mark.parametrize("calibrate", ["auto", "false"])  # two passes over the video | frame by frame
def test_dp_predict_video_gives_the_frame_size(tmp_path, bpred, calibrate):
    from test_predict import make_video

    video = tmp_path / "clip.mp4"
    make_video(video, n=3, size=(640, 360))
    with model_inputs() as seen:
        summary, recs = run_predict(tmp_path, bpred, video, f"scene.calibrate={calibrate}")
    assert summary["counts"]["frames"] == 3 and len(recs) == 15
    kp = CutDetector().dets.keypoints
    want = expected(bpred, kp, (640, 360))  # the video's frame, not the keypoints' 1242 x 375 image
    got = torch.cat(seen[0::2]) if calibrate == "false" else seen[0]  # per frame: (keypoints, mirrored)
    torch.testing.assert_close(got, want.repeat(3, 1))
    assert (border_part(got)[:, -1] == 1).all()
    assert not torch.equal(border_part(want), border_part(expected(bpred, kp, (W, H))))
