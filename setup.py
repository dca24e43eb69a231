"""Build hook: ``conf/`` (the Hydra config tree, kept at the top level of the repo) ships inside the wheel as
``depth_pose/conf``, where :func:`depth_pose.env.config_dir` finds it when the package is installed.
Everything else is declared in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    """build_py that also copies the top-level ``conf/`` tree into the built ``depth_pose`` package."""

    def run(self) -> None:
        super().run()
        src = Path(__file__).resolve().parent / "conf"
        dst = Path(self.build_lib) / "depth_pose" / "conf"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConf})
