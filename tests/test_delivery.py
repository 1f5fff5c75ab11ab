"""Getting the course onto a learner's machine: devcontainer, offline wheelhouse, canary, 3.13."""

import importlib.util
import json
import pathlib
import re
import subprocess
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_wheelhouse():
    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "tools" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheelhouse = load_wheelhouse()


def readme_install():
    """The install command of the README's test-command block (before `&& pytest`)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    command = lines[lines.index("<!-- test-command -->") + 2]
    return command.split(" && ")[0]


def test_devcontainer_runs_the_readme_install_on_python_3_11_and_forwards_jupyterlab():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert re.search(r"python:(1-)?3\.11", config["image"])
    assert readme_install() == "pip install -r requirements.txt"
    steps = config["postCreateCommand"].split(" && ")
    assert steps[0] == "python3.11 -m venv .venv" and readme_install() in steps
    assert "python prunefl_lite/setup_check.py" in steps
    assert 8888 in config["forwardPorts"]


def test_wheelhouse_requirements_drop_the_editable_line_and_add_the_build_backend(tmp_path):
    lines = wheelhouse.requirements_without_editable(tmp_path).read_text().splitlines()
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line and not line.startswith(("#", "-e"))]
    sdists = wheelhouse.pure_python_sdists()
    assert sdists == ["jieba==0.42.1"]  # only a source archive on PyPI: built, not downloaded
    assert not any(line.startswith("-e") for line in lines)
    assert [line for line in lines if line in pinned] == [
        line for line in pinned if line.split("#")[0].strip() not in sdists]
    assert lines[-1].startswith("setuptools>=")


def fake_wheel(folder, name, requires):
    path = folder / f"{name}-1.0-py3-none-any.whl"
    metadata = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0",
                          *(f"Requires-Dist: {r}" for r in requires)]) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-1.0.dist-info/METADATA", metadata)
    return path


@pytest.mark.parametrize(
    "platform, expected",
    [("linux", ["pexpect>4.3", "tinycss2>=1.1"]),
     ("macos", ["appnope>=0.1.2", "pexpect>4.3", "tinycss2>=1.1"]),
     ("windows", ["pywinpty>=2.0.1", "tinycss2>=1.1"])],
)
def test_wheelhouse_evaluates_markers_for_the_target_platform(tmp_path, platform, expected):
    # pip download evaluates markers on the machine it runs on; the second pass must not
    fake_wheel(tmp_path, "ipython", ['pexpect>4.3; sys_platform != "win32"',
                                     'appnope>=0.1.2; sys_platform == "darwin"',
                                     "bleach[css]"])
    fake_wheel(tmp_path, "terminado", ['pywinpty>=2.0.1; os_name == "nt"',
                                       'tomli; python_version < "3.11"'])
    fake_wheel(tmp_path, "bleach", ['tinycss2>=1.1; extra == "css"', "webencodings"])
    fake_wheel(tmp_path, "webencodings", [])
    missing = wheelhouse.missing_requirements(tmp_path, wheelhouse.target_environment(platform))
    assert missing == expected  # tinycss2: asked through bleach's extra "css"
    fake_wheel(tmp_path, "tinycss2", ["webencodings>=0.4"])
    assert "tinycss2>=1.1" not in wheelhouse.missing_requirements(
        tmp_path, wheelhouse.target_environment(platform))


@pytest.mark.parametrize("script", ["tools/canary.sh", "tools/check_python.sh", ".ci/run"])
def test_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_canary_floats_exactly_the_stack_and_runs_weekly():
    script = (ROOT / "tools" / "canary.sh").read_text()
    newest = re.search(r"newest=\((.*?)\)", script, re.S).group(1).replace('"', "").split()
    floating = re.search(r"floating='\^\((.*?)\)==", script).group(1).split("|")
    stack = ["tensorflow", "tf-keras", "tensorflow-model-optimization", "flwr", "ai-edge-litert",
             "dp-accounting", "jupyter-book<2", "myst-nb"]
    assert newest == stack and floating == [name.split("<")[0] for name in stack]
    pins = (ROOT / "requirements.txt").read_text()
    assert all(re.search(rf"^{name}==", pins, re.M) for name in floating)
    workflow = (ROOT / ".github" / "workflows" / "canary.yml").read_text()
    assert re.search(r'cron: "\d+ \d+ \* \* \d"', workflow) and "workflow_dispatch:" in workflow
    assert "run: bash tools/canary.sh" in workflow


def test_ci_runs_python_3_13_after_the_3_11_gate():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index('eval "$test_command"') < ci.index("bash tools/check_python.sh 3.13")
    check = (ROOT / "tools" / "check_python.sh").read_text()
    for step in ("-m pip install --quiet -r requirements.txt", "prunefl_lite/setup_check.py",
                 'pytest -m "not slow"', 'pytest "$chapter"'):
        assert step in check
    assert "$(pyenv root)" in check  # found under pyenv when the shim is not selected


def test_the_wheelhouse_record_covers_the_three_platforms():
    record = json.loads((ROOT / "tools" / "wheelhouse-sizes.json").read_text())
    assert sorted(record["platforms"]) == ["linux", "macos", "windows"]
    for measured in record["platforms"].values():
        assert measured["wheels"] > 100 and measured["bytes"] > 100e6
        assert measured["largest"][0].startswith("tensorflow-")
