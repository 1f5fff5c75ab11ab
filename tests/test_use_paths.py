"""The README's "run a chapter" path: `jupyter lab notebooks/` starts, serves chapters, stops."""

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180  # generous: a cold start on a busy 2-core machine takes tens of seconds


def free_port():
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url, method="GET"):
    """(status, body) of an HTTP request to the local server; status 0 if it does not answer yet."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def stop(process):
    """Stop the server and everything it started (its own process group), also on failure."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """`jupyter lab --no-browser notebooks/` on a free port with throw-away config and runtime dirs.

    Yields (base_url, token) once the server answers HTTP; stops the server afterwards.
    """
    tmp_path = tmp_path_factory.mktemp("jupyter")
    executable = shutil.which("jupyter", path=str(pathlib.Path(sys.executable).parent))
    if executable is None:
        pytest.fail(
            "`jupyter` is not installed next to this Python: pip install -r requirements.txt")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_NO_CONFIG": "1"}
    log = (tmp_path / "server.log").open("wb")
    command = [executable, "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={token}", "--ServerApp.port_retries=0",
               str(ROOT / "notebooks")]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI runners often run as root
        command.append("--allow-root")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while get(f"{base}/api/status?token={token}")[0] != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("jupyter lab did not start:\n"
                            + (tmp_path / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield base, token
    finally:
        stop(process)
        log.close()
    assert process.poll() is not None, "the server is still running"


@pytest.mark.slow
def test_jupyter_lab_serves_the_chapters(jupyter_lab):
    base, token = jupyter_lab
    status, page = get(f"{base}/lab?token={token}")
    assert status == 200 and "JupyterLab" in page  # the lab front end itself, not only a server
    status, listing = get(f"{base}/api/contents?token={token}")
    assert status == 200
    names = {item["name"] for item in json.loads(listing)["content"]}
    chapters = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert chapters and chapters <= names  # it opens on the chapters' folder
    status, specs = get(f"{base}/api/kernelspecs?token={token}")
    assert status == 200 and "python3" in json.loads(specs)["kernelspecs"]  # the chapters' kernel


@pytest.mark.slow
def test_jupyter_lab_refuses_requests_without_the_token(jupyter_lab):
    base, _ = jupyter_lab
    assert get(f"{base}/api/contents")[0] == 403
