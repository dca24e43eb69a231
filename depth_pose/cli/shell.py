"""The one shell around the four commands: config dir, config errors, user errors, exit codes.

Every command is ``run(prog, config_name, task)``: Hydra composes ``conf/<config_name>.yaml`` from
:func:`depth_pose.env.config_dir` (the checkout's ``conf/`` or the copy an installed wheel carries) and calls
``task(cfg) -> (value, exit_code)`` once per job (``value`` goes back to Hydra's sweeper: the optimised metric
of ``dp-train -m``). A user mistake -- a bad override, an :class:`~depth_pose.errors.InputError` (also when
Hydra's ``instantiate`` wrapped it), a target that does not exist -- becomes one ``<prog>: error: ...``
line and :data:`~depth_pose.errors.EXIT_USAGE`; anything else is a bug and keeps its traceback. The process
exits with the worst code of its jobs: 0 done, 3 partly done, 2 unusable input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

from depth_pose.env import config_dir
from depth_pose.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, InputError

Task = Callable[[Any], tuple[Any, int]]
_SEVERITY = {EXIT_OK: 0, EXIT_PARTIAL: 1, EXIT_USAGE: 2}
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


def user_error(
    err: BaseException, kinds: tuple[type[BaseException], ...] = (InputError,)
) -> BaseException | None:
    """The user mistake behind ``err`` (``err`` itself or what Hydra's ``instantiate`` wrapped), else None."""
    from hydra.errors import InstantiationException

    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, kinds):
            return cur
        if isinstance(cur, InstantiationException) and cur.__cause__ is None and cur.__context__ is None:
            return (
                cur  # Hydra's own "Error locating target ..." / "Error in call to target ...": a config value
            )
        cur = cur.__cause__ or cur.__context__
    return None


def worst(a: int, b: int) -> int:
    """The worse of two exit codes: unusable input (2) over partly done (3) over done (0)."""
    return max(a, b, key=lambda c: _SEVERITY.get(c, 3))


def one_line(err: BaseException) -> str:
    """``err``'s message on one line (Hydra's multi-line messages joined)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def check_overrides(config_name: str, argv: list[str]) -> str | None:
    """Compose ``config_name`` with the command line's overrides (single runs only); the problem, else None.

    Hydra would print a multi-line message and exit 1 before the task starts; this names the override instead.
    """
    if any(a in _INFO_FLAGS or a.startswith(("--cfg=", "--info=")) for a in argv):
        return None
    if any(a in ("-m", "--multirun") for a in argv) or any(a.startswith("-") for a in argv):
        return None  # sweeps and other flags: Hydra checks them (its exit code is still mapped to 2)
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in argv if not a.startswith("hydra.") and not a.startswith("hydra/")]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            compose(config_name, overrides=overrides)
    except Exception as e:  # noqa: BLE001  (any composition failure is about the command line)
        return one_line(e)
    finally:
        GlobalHydra.instance().clear()
    return None


def run(
    prog: str, config_name: str, task: Task, kinds: tuple[type[BaseException], ...] = (InputError,)
) -> NoReturn:
    """Run ``task`` as the Hydra app ``prog`` on ``conf/<config_name>.yaml`` and exit with the
    documented code."""
    import hydra

    problem = check_overrides(config_name, sys.argv[1:])
    if problem is not None:
        print(f"{prog}: error: bad command line: {problem}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)
    state = {"code": EXIT_OK, "started": False}

    @hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")
    def app(cfg: Any) -> Any:
        state["started"] = True
        try:
            value, code = task(cfg)
        except Exception as e:
            err = user_error(e, kinds)
            if err is None:
                raise
            print(f"{prog}: error: {one_line(err)}", file=sys.stderr, flush=True)
            state["code"] = worst(state["code"], EXIT_USAGE)
            return float("nan")
        state["code"] = worst(state["code"], int(code))
        return value

    try:
        app()
    except SystemExit as e:
        if not state["started"] and e.code not in (0, None):
            sys.exit(EXIT_USAGE)  # Hydra refused the command line before any job started
        raise
    except Exception as e:
        if state["started"]:
            raise
        print(f"{prog}: error: bad command line: {one_line(e)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USAGE)  # e.g. Hydra's "Only one of --multirun, --cfg ... can be specified"
    sys.exit(state["code"])
