"""The workshop set-up check: passes on this environment, names the broken package otherwise."""

import os
import pathlib
import subprocess
import sys

import pytest

from prunefl_lite import setup_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "prunefl_lite" / "setup_check.py"


def run_check(extra_path=None, cwd=ROOT):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow  # a subprocess importing the whole stack, a kernel and a 3-round run
def test_passes_on_the_course_environment_whatever_the_learner_saved(tmp_path):
    # the check reads no notebook: run it from a folder where a chapter has stored outputs
    saved = tmp_path / "notebooks"
    saved.mkdir()
    (saved / "01_background.ipynb").write_text('{"cells": [{"cell_type": "code", "outputs": [1]}]}')
    result = run_check(extra_path=ROOT, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Ready: every check passed" in result.stdout
    assert "ok      federated pruning run: 3 rounds, sparsity 50%" in result.stdout
    seconds = float(result.stdout.rsplit("passed in ", 1)[1].split(" s")[0])
    assert seconds < 60 * 3  # the budget is 60 s on a quiet laptop; loose here for busy CI
    assert result.stderr == ""  # nothing red on a learner's screen


@pytest.mark.slow  # a subprocess importing the stack up to the broken package
@pytest.mark.parametrize("module, named", [
    ("tensorflow_model_optimization", "tensorflow-model-optimization"),
    ("flwr", "flwr"),
])
def test_names_the_broken_package(tmp_path, module, named):
    broken = tmp_path / module
    broken.mkdir()
    (broken / "__init__.py").write_text('raise ImportError("simulated broken install")\n')
    result = run_check(extra_path=tmp_path)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and f"FAILED  {named}: cannot be imported" in failed[0]
    assert "simulated broken install" in failed[0]
    assert "pip install -r requirements.txt" in failed[0]
    assert "NOT ready" in result.stdout



@pytest.mark.parametrize("version", [(3, 11, 7), (3, 12, 1), (3, 13, 0), (3, 13, 9, "final", 0)])
def test_python_3_11_to_3_13_pass(version):
    assert setup_check.check_python(version) == ".".join(map(str, version[:3]))


@pytest.mark.parametrize("version", [(3, 10, 13), (3, 14, 0), (2, 7, 18)])
def test_other_pythons_are_named_and_refused(version):
    found = ".".join(map(str, version))
    with pytest.raises(setup_check.CheckFailed,
                       match=f"Python must be 3.11, 3.12 or 3.13, got {found}; make the course"):
        setup_check.check_python(version)


def test_the_running_python_passes_and_matches_requires_python():
    import tomllib
    assert setup_check.check_python() == sys.version.split()[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.14"
    assert [f"{a}.{b}" for a, b in setup_check.PYTHONS] == ["3.11", "3.12", "3.13"]
