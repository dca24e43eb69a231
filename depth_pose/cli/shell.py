"""The one shell around the four commands: config dir, config errors, user errors, exit codes.

Every command is ``run(prog, config_name, task)``: Hydra composes ``conf/<config_name>.yaml`` from
:func:`depth_pose.env.config_dir` (the checkout's ``conf/`` or the copy an installed wheel carries) and calls
``task(cfg) -> (value, exit_code)`` once per job (``value`` goes back to Hydra's sweeper: the optimised metric
of ``dp-train -m``). A user mistake -- a bad override, an :class:`~depth_pose.errors.InputError` (also when
Hydra's ``instantiate`` wrapped it), a target that does not exist -- becomes one ``<prog>: error: ...``
line and :data:`~depth_pose.errors.EXIT_USAGE`; anything else is a bug and keeps its traceback. Ctrl-C is one
``<prog>: interrupted (Ctrl-C)`` line and :data:`~depth_pose.errors.EXIT_INTERRUPTED` (130; a multirun stops
there). The process exits with the worst code of its jobs: 0 done, 3 partly done, 2 unusable input (1: a job
crashed).

Multiruns (``-m``): the sweep's overrides are checked like a single run's (the first value of each sweep), and
every job's code reaches the launching process also when the jobs run elsewhere (``hydra/launcher=slurm`` or
``submitit_local``): each job writes it to ``<sweep dir>/.exit_codes/<job num>``, and the :class:`JobCodes`
callback (``conf/hydra/default.yaml``) tells the launching process where the sweep is.
"""

from __future__ import annotations

import difflib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback

from depth_pose.env import config_dir
from depth_pose.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, InputError, chain

Task = Callable[[Any], tuple[Any, int]]
_SEVERITY = {EXIT_OK: 0, EXIT_PARTIAL: 1, EXIT_USAGE: 2, EXIT_INTERRUPTED: 4}
# Flags after which Hydra prints something and exits without running the task.
_INFO_FLAGS = (
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
)
CODES_DIR = ".exit_codes"  # <sweep dir>/.exit_codes/<job num>: each job's exit code (multiruns)
_SWEEP: dict[str, Any] = {"dir": None}  # the sweep of this process's multirun (set by JobCodes)


def user_error(
    err: BaseException, kinds: tuple[type[BaseException], ...] = (InputError,)
) -> BaseException | None:
    """The user mistake behind ``err`` (``err`` itself or what Hydra's ``instantiate`` wrapped), else None."""
    from hydra.errors import InstantiationException

    for cur in chain(err):
        if isinstance(cur, kinds):
            return cur
        if isinstance(cur, InstantiationException) and cur.__cause__ is None and cur.__context__ is None:
            return (
                cur  # Hydra's own "Error locating target ..." / "Error in call to target ...": a config value
            )
    return None


def worst(a: int, b: int) -> int:
    """The worse of two exit codes: unusable input (2) over partly done (3) over done (0)."""
    return max(a, b, key=lambda c: _SEVERITY.get(c, 3))


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (Hydra's multi-line messages joined)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """``overrides`` with every sweep (``a=1,2``, ``range(..)``, ``choice(..)``) replaced by its first value
    and ``interval(..)`` sweeps (Optuna) left out: one job's overrides, to check a multirun's keys and values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out = []
    for text in overrides:
        try:
            (ov,) = parser.parse_overrides([text])
        except Exception:  # noqa: BLE001  (composing it reports the syntax error)
            out.append(text)
            continue
        if not ov.is_sweep_override():
            out.append(text)
        elif ov.is_discrete_sweep():
            first = next(iter(ov.sweep_string_iterator()), None)
            if first is not None:
                out.append(f"{ov.get_key_element()}={first}")
    return out


def _unknown_key(config_name: str, overrides: list[str], message: str, typed: list[str]) -> str | None:
    """For Hydra's "Could not override 'KEY'": ``KEY=...: no such key`` and the nearest existing keys."""
    import re

    from hydra import compose
    from omegaconf import OmegaConf

    m = re.match(r"Could not override '([^']+)'", message)
    if m is None:
        return None
    key = m.group(1)
    rest = [o for o in overrides if not o.lstrip("+~").startswith(key + "=") and o.lstrip("+~") != key]
    try:
        tree = OmegaConf.to_container(compose(config_name, overrides=rest), resolve=False)
    except Exception:  # noqa: BLE001
        return None
    keys: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                keys.append(f"{prefix}{k}")
                walk(v, f"{prefix}{k}.")

    walk(tree, "")
    near = difflib.get_close_matches(key, keys, n=2, cutoff=0.6)
    given = next((o for o in typed if o.lstrip("+~").startswith(key + "=")), key)
    hint = f" (did you mean {' or '.join(near)}?)" if near else ""
    return f"{given}: no such key in conf/{config_name}.yaml{hint}"


def check_overrides(config_name: str, argv: list[str]) -> str | None:
    """Compose ``config_name`` with the command line's overrides (a multirun's: the first value of each
    sweep); the problem, else None.

    Hydra would print a multi-line message and exit 1 before the task starts; this names the override instead
    (a mistyped key: with the nearest existing keys).
    """
    if any(a in _INFO_FLAGS or a.startswith(("--cfg=", "--info=")) for a in argv):
        return None
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return None  # other flags (--config-dir, ...): Hydra checks them (its exit code is still mapped to 2)
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    typed = [a for a in argv if not a.startswith(("-", "hydra.", "hydra/", "+hydra.", "+hydra/"))]
    overrides = first_of_sweeps(typed) if multirun else typed
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            try:
                compose(config_name, overrides=overrides)
            except Exception as e:  # noqa: BLE001  (any composition failure is about the command line)
                return _unknown_key(config_name, overrides, one_line(e), typed) or one_line(e)
    finally:
        GlobalHydra.instance().clear()
    return None


def check_common(cfg: Any) -> None:
    """Values several commands share, checked before any job work (:class:`InputError`, exit 2):
    ``vis_threshold`` (dp-generate, dp-train, dp-eval) is a keypoint confidence in [0, 1]; ``device``
    (dp-generate, dp-eval, dp-predict) and ``detector.device`` (null: ultralytics picks) name a device this
    machine has."""
    from depth_pose.jsonvalues import option_device

    if "vis_threshold" in cfg:
        v = cfg.vis_threshold
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
            raise InputError(f"vis_threshold={v} must be a number in [0, 1] (keypoint confidence)")
    if cfg.get("device") is not None:
        option_device(cfg.device, "device")
    detector = cfg.get("detector")
    if hasattr(detector, "get") and detector.get("device") is not None:
        option_device(detector.device, "detector.device", gpu_indices=True)  # ultralytics takes "0", "0,1"


class JobCodes(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): in the launching process of a multirun, remember the
    sweep folder and clear its ``.exit_codes/`` so :func:`run` exits with the worst code of this sweep's jobs.
    """

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        shutil.rmtree(sweep / CODES_DIR, ignore_errors=True)
        _SWEEP["dir"] = sweep


def record_job_code(code: int) -> int | None:
    """In a multirun job: write its exit code to ``<sweep dir>/.exit_codes/<job num>`` (read by :func:`run` in
    the launching process, which may be another process or machine); the job's number (None: no multirun)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    try:
        folder = Path(str(hc.sweep.dir)) / CODES_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / str(hc.job.num)).write_text(f"{int(code)}\n")
    except OSError:
        pass  # the code still reaches an in-process launcher through run's own state
    return int(hc.job.num)


def sweep_codes() -> dict[int, int]:
    """``{job number: exit code}`` the jobs of this process's multirun wrote (empty outside a multirun)."""
    if _SWEEP["dir"] is None:
        return {}
    codes = {}
    for f in (_SWEEP["dir"] / CODES_DIR).glob("*"):
        if f.name.isdigit():
            try:
                codes[int(f.name)] = int(f.read_text().strip())
            except (OSError, ValueError):
                codes[int(f.name)] = 1
    return dict(sorted(codes.items()))


def remote_jobs_code(prog: str, local: set[int], code: int) -> int:
    """``code`` combined with the codes of the sweep's jobs that ran in other processes (submitit), each
    failed one named on stderr (its own error line is in its log under ``<sweep dir>/.submitit/``)."""
    for num, job_code in sweep_codes().items():
        if num not in local and job_code != EXIT_OK:
            print(
                f"{prog}: job {num} exited with code {job_code} (its log: {_SWEEP['dir']}/.submitit/)",
                file=sys.stderr,
                flush=True,
            )
        code = worst(code, job_code)
    return code


def run(
    prog: str, config_name: str, task: Task, kinds: tuple[type[BaseException], ...] = (InputError,)
) -> NoReturn:
    """Run ``task`` as the Hydra app ``prog`` on ``conf/<config_name>.yaml`` and exit with the
    documented code (a Ctrl-C anywhere, the start-up and a launcher's wait included: one line, 130)."""
    try:
        _run(prog, config_name, task, kinds)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)


def _run(prog: str, config_name: str, task: Task, kinds: tuple[type[BaseException], ...]) -> NoReturn:
    import hydra

    problem = check_overrides(config_name, sys.argv[1:])
    if problem is not None:
        print(f"{prog}: error: bad command line: {problem}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)
    state: dict[str, Any] = {"code": EXIT_OK, "started": False, "jobs": set()}

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def app(cfg: Any) -> Any:
        state["started"] = True
        try:
            check_common(cfg)
            value, code = task(cfg)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            state["jobs"].add(record_job_code(EXIT_INTERRUPTED))
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:
            from omegaconf.errors import MissingMandatoryValue

            err = user_error(e, (*kinds, MissingMandatoryValue))
            if err is None:
                state["jobs"].add(record_job_code(1))
                raise
            if isinstance(err, MissingMandatoryValue):  # a ??? value of the config nobody gave
                key = getattr(err, "full_key", None) or "a required value"
                err = InputError(f"{key}= is required (e.g. {prog} {key}=...)")
            print(f"{prog}: error: {one_line(err)}", file=sys.stderr, flush=True)
            state["code"] = worst(state["code"], EXIT_USAGE)
            state["jobs"].add(record_job_code(EXIT_USAGE))
            return float("nan")
        state["code"] = worst(state["code"], int(code))
        state["jobs"].add(record_job_code(int(code)))
        if code == EXIT_INTERRUPTED:  # the task stopped on Ctrl-C itself (and said so): no further jobs
            sys.exit(EXIT_INTERRUPTED)
        return value

    try:
        app()
    except SystemExit as e:
        if _SWEEP["dir"] is not None and e.code not in (0, None):  # a job crashed (it ran elsewhere)
            sys.exit(remote_jobs_code(prog, state["jobs"], int(e.code) if isinstance(e.code, int) else 1))
        if not state["started"] and e.code not in (0, None):
            sys.exit(EXIT_USAGE)  # Hydra refused the command line before any job started
        raise
    except Exception as e:
        if state["started"] or _SWEEP["dir"] is not None:
            raise
        print(f"{prog}: error: bad command line: {one_line(e)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)  # e.g. Hydra's "Only one of --multirun, --cfg ... can be specified"
    sys.exit(remote_jobs_code(prog, state["jobs"], state["code"]))
