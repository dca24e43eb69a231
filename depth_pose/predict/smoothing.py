"""Per-track temporal smoothing of predicted depth, weighted by the predicted uncertainty.

Two filters, both bounded in lag (``max_lag_s``) so that a person walking toward the camera is not reported
farther away than they were ``max_lag_s`` seconds ago:

* :class:`KalmanCV`: constant-velocity Kalman filter on (z, dz/dt). Measurement noise R = sigma^2 (the model's
  own uncertainty); process noise is white acceleration with std ``accel_std`` (m/s^2). A CV model has no
  steady-state lag on a ramp; its transient after a change of speed lasts about sqrt(2)/omega with
  omega = sqrt(accel_std / sigma) (continuous-time steady state of this model), so ``accel_std`` is raised per
  update to at least ``2 sigma / max_lag_s^2`` to keep that transient within ``max_lag_s``.
* :class:`OneEuro`: the One-Euro filter (Casiez et al. 2012): a first-order low-pass whose cutoff rises with
  speed. Its cutoff (speed term included: a noisy z makes a noisy speed) is scaled by (sigma_ref / sigma)
  (confident measurements are trusted more) and floored at 1 / (2 pi 0.7 max_lag_s), the cutoff whose ramp
  lag is 0.7 ``max_lag_s`` (a margin: the cutoff dips to the floor on noisy speed estimates).

Both report a smoothed sigma as well (Kalman: posterior std; One-Euro: sigma filtered the same way, which is
conservative). Neither can average away the part of a depth's error that a person keeps from frame to frame
(their size as the model reads it, the camera height of a calibrated scene): :class:`TrackSmoother` treats
``shared_share`` of each measurement's variance as such, or the caller's ``sigma_shared`` where larger (a
scene's calibration error, :class:`~depth_pose.scene.FusedDepth`), and reports ``sigma^2 = shared +
(1 - shared / sigma_in^2) sigma_filter^2``. Without it the Kalman posterior covered the truth in 33-38% of a
calibrated scene's person-frames at 1 sigma (68% expected), against 47-54% before the filter
(docs/bench_scenes.md, session 16). :class:`TrackSmoother` keeps one filter per track id and forgets tracks
unseen for ``track_timeout_s``.
"""

from __future__ import annotations

import math

import numpy as np

from depth_pose.errors import InputError  # a ValueError: a config value the user gave
from depth_pose.jsonvalues import option_number

LAG_MARGIN = 0.7  # One-Euro: ramp lag of the cutoff floor = 0.7 * max_lag_s (room for noise-driven dips)


class KalmanCV:
    """Constant-velocity Kalman filter of one track's depth (see module docstring)."""

    def __init__(self, max_lag_s: float = 0.5, accel_std: float = 2.0, init_vel_std: float = 2.0) -> None:
        self.max_lag_s, self.accel_std, self.init_vel_std = max_lag_s, accel_std, init_vel_std
        self.x: np.ndarray | None = None  # (z, v)
        self.P: np.ndarray | None = None
        self.t: float | None = None

    def update(self, t: float, z: float, sigma: float) -> tuple[float, float]:
        r = max(float(sigma), 1e-3) ** 2
        if self.x is None:
            self.x = np.array([z, 0.0])
            self.P = np.diag([r, self.init_vel_std**2])
            self.t = t
            return float(z), float(math.sqrt(r))
        dt = max(t - self.t, 1e-3)
        self.t = t
        a = (
            max(self.accel_std, 2.0 * math.sqrt(r) / self.max_lag_s**2)
            if self.max_lag_s > 0
            else self.accel_std
        )
        F = np.array([[1.0, dt], [0.0, 1.0]])
        Q = a**2 * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
        x = F @ self.x
        P = F @ self.P @ F.T + Q
        S = P[0, 0] + r
        Kg = P[:, 0] / S
        self.x = x + Kg * (z - x[0])
        self.P = P - np.outer(Kg, P[0, :])
        return float(self.x[0]), float(math.sqrt(max(self.P[0, 0], 0.0)))


class _LowPass:
    def __init__(self) -> None:
        self.y: float | None = None

    def __call__(self, x: float, alpha: float) -> float:
        self.y = x if self.y is None else alpha * x + (1.0 - alpha) * self.y
        return self.y


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """One-Euro filter of one track's depth, uncertainty-aware and lag-bounded (see module docstring)."""

    def __init__(
        self,
        max_lag_s: float = 0.5,
        min_cutoff: float = 0.3,
        beta: float = 0.3,
        d_cutoff: float = 1.0,
        sigma_ref: float = 0.3,
    ) -> None:
        self.max_lag_s, self.min_cutoff, self.beta, self.d_cutoff = max_lag_s, min_cutoff, beta, d_cutoff
        self.sigma_ref = sigma_ref
        self._z, self._dz, self._s = _LowPass(), _LowPass(), _LowPass()
        self.t: float | None = None
        self.z_prev: float | None = None

    def update(self, t: float, z: float, sigma: float) -> tuple[float, float]:
        if self.t is None:
            self.t, self.z_prev = t, z
            return self._z(z, 1.0), self._s(sigma, 1.0)
        dt = max(t - self.t, 1e-3)
        self.t = t
        dz = self._dz((z - self.z_prev) / dt, _alpha(self.d_cutoff, dt))
        self.z_prev = z
        trust = self.sigma_ref / max(float(sigma), 1e-3)
        cutoff = (self.min_cutoff + self.beta * abs(dz)) * trust  # noisy sigma -> noisy dz: trust it less too
        if self.max_lag_s > 0:
            cutoff = max(cutoff, 1.0 / (2.0 * math.pi * LAG_MARGIN * self.max_lag_s))
        a = _alpha(cutoff, dt)
        return self._z(z, a), self._s(sigma, a)


class TrackSmoother:
    """One depth filter per track id (``method``: kalman | one_euro | none); Hydra-instantiable."""

    def __init__(
        self,
        method: str = "kalman",
        max_lag_s: float = 0.5,
        track_timeout_s: float = 2.0,
        accel_std: float = 2.0,
        min_cutoff: float = 0.3,
        beta: float = 0.3,
        d_cutoff: float = 1.0,
        sigma_ref: float = 0.3,
        shared_share: float = 0.5,
    ) -> None:
        if method not in ("kalman", "one_euro", "none"):
            raise InputError(f"smoothing.method must be kalman | one_euro | none, got '{method}'")
        # inf: no bound on the lag / never forget a track
        option_number(max_lag_s, "smoothing.max_lag_s", 0.0, allow_inf=True)
        option_number(track_timeout_s, "smoothing.track_timeout_s", 0.0, allow_inf=True)
        option_number(shared_share, "smoothing.shared_share", 0.0, 1.0)
        for key, value in (("accel_std", accel_std), ("beta", beta)):
            option_number(value, f"smoothing.{key}", 0.0)
        for key, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff), ("sigma_ref", sigma_ref)):
            option_number(value, f"smoothing.{key}", 0.0, open_lo=True)
        self.method, self.max_lag_s, self.track_timeout_s = method, max_lag_s, track_timeout_s
        self.shared_share = shared_share
        self.kw = (
            {"accel_std": accel_std}
            if method == "kalman"
            else {"min_cutoff": min_cutoff, "beta": beta, "d_cutoff": d_cutoff, "sigma_ref": sigma_ref}
        )
        self.filters: dict[int, KalmanCV | OneEuro] = {}
        self.last_seen: dict[int, float] = {}

    def new_filter(self) -> KalmanCV | OneEuro:
        cls = KalmanCV if self.method == "kalman" else OneEuro
        return cls(max_lag_s=self.max_lag_s, **self.kw)

    def reset(self) -> None:
        self.filters.clear()
        self.last_seen.clear()

    def __call__(
        self,
        t: float,
        track_ids: np.ndarray | None,
        z: np.ndarray,
        sigma: np.ndarray,
        sigma_shared: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed (z, sigma) for the people of one frame at time ``t`` (s); untracked people (id < 0) pass
        through. ``sigma_shared`` (N,): the part of each sigma no number of frames averages away."""
        z_out, s_out = np.asarray(z, np.float64).copy(), np.asarray(sigma, np.float64).copy()
        for tid in [k for k, seen in self.last_seen.items() if t - seen > self.track_timeout_s]:
            self.filters.pop(tid, None)
            self.last_seen.pop(tid, None)
        if self.method == "none" or track_ids is None:
            return z_out, s_out
        for i, tid in enumerate(np.asarray(track_ids).tolist()):
            if tid < 0 or not (math.isfinite(z_out[i]) and math.isfinite(s_out[i])):
                continue
            f = self.filters.get(tid)
            if f is None:
                f = self.filters[tid] = self.new_filter()
            s_in = float(s_out[i])
            z_out[i], s_f = f.update(t, float(z_out[i]), s_in)
            kept = self.shared_share * s_in**2
            if sigma_shared is not None and math.isfinite(float(sigma_shared[i])):
                kept = min(max(kept, float(sigma_shared[i]) ** 2), s_in**2)
            s_out[i] = math.sqrt(kept + (1.0 - kept / max(s_in**2, 1e-12)) * s_f**2)
            self.last_seen[tid] = t
        return z_out, s_out
