"""The workshop set-up check: passes on this environment, names the broken package otherwise."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "prunefl_lite" / "setup_check.py"


def run_check(extra_path=None, cwd=ROOT):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, str(SCRIPT)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


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
    assert "simulated broken install" in failed[0] and "pip install -r requirements.txt" in failed[0]
    assert "NOT ready" in result.stdout

