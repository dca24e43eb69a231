"""The generator's fused kernels (torch.compile) compute the same data as eager mode, and the switch works."""

from __future__ import annotations

import pytest
import torch
from helpers import compose

from generation import config, generator, kernels


@pytest.fixture()
def restore_kernels():
    before = kernels.enabled()
    yield
    kernels.configure(before)


def test_resolve_compile_setting():
    assert kernels.resolve(True) and not kernels.resolve(False) and not kernels.resolve(None)
    assert kernels.resolve("auto", kernels.AUTO_MIN_SAMPLES, "cpu")
    assert not kernels.resolve("auto", kernels.AUTO_MIN_SAMPLES - 1, "cpu")
    assert not kernels.resolve("auto", 10 * kernels.AUTO_MIN_SAMPLES, "cuda")
    with pytest.raises(ValueError, match="compile must be"):
        kernels.resolve("sometimes")


@pytest.mark.slow  # torch.compile of every stage
def test_compiled_generation_matches_eager(restore_kernels):
    """Same seed, eager vs compiled: equal up to float round-off, identical discrete decisions (camera
    acceptance, visibility, detector confidences' seen/unseen split), every stage compiled without falling
    back."""
    cfg = compose("generate", ["paths.root_dir=/tmp", "compile=false"])
    gen = generator.Generator(config.with_defaults(cfg))
    assert not gen.compiled

    def run():
        with torch.no_grad():
            return gen.sample(3000, torch.Generator().manual_seed(11), 65536)

    _, posed_e, cams_e, obs_e, _ = run()
    assert kernels.configure(True)
    _, posed_c, cams_c, obs_c, _ = run()
    assert kernels.enabled(), "a compiled kernel failed and fell back to eager"
    torch.testing.assert_close(posed_c.keypoints, posed_e.keypoints, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cams_c.K, cams_e.K)
    torch.testing.assert_close(cams_c.R, cams_e.R, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(obs_c.z_m, obs_e.z_m, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(obs_c.gt_px, obs_e.gt_px, atol=1e-2, rtol=1e-5, equal_nan=True)
    assert torch.equal(obs_c.gt_visible, obs_e.gt_visible)
    det_c, det_e = obs_c.det_xyc, obs_e.det_xyc
    assert torch.equal(det_c[..., 2] >= 0.1, det_e[..., 2] >= 0.1)
    assert torch.equal(det_c[..., :2].isnan(), det_e[..., :2].isnan())
    torch.testing.assert_close(det_c, det_e, atol=1e-2, rtol=1e-4, equal_nan=True)
