#!/usr/bin/env python3
"""An offline wheelhouse for a workshop: download every wheel once, install with no network.

Before the workshop, on a machine with the network (any OS, Python 3.11 with pip)::

    python tools/wheelhouse.py download                    # Linux, macOS and Windows
    python tools/wheelhouse.py download --platform linux   # or one platform

writes ``wheelhouse/<platform>/`` (one folder per platform, a USB stick's worth) and records the
number of wheels and bytes per platform in tools/wheelhouse-sizes.json (book/workshop.md shows
them). At the workshop, in the course's virtual environment (Python
3.11), with no network::

    python tools/wheelhouse.py install                     # this machine's platform

runs ``pip install --no-index --find-links wheelhouse/<platform> -r requirements.txt``.

``download`` runs ``pip download --only-binary=:all: --python-version 3.11 --platform ...`` on
requirements.txt without its editable line, plus the course package's build backend (setuptools,
from pyproject.toml: ``-e .`` is built at install time, offline). pip evaluates environment
markers (``sys_platform != "win32"``) for the machine it runs on, not for the ``--platform`` it
downloads for: from Linux it would ask for ``uvloop`` on Windows (no such wheel) and miss
``pywinpty``. So pip runs here with the target's marker environment (``sys_platform``,
``platform_system``, ``os_name``, ``platform_machine``, Python 3.11) in place of the host's, and
a last pass reads every downloaded wheel's dependencies, evaluates their markers for the target
and fails if one is missing.
"""

import argparse
import email.parser
import hashlib
import json
import pathlib
import platform
import subprocess
import sys
import tempfile
import tomllib
import zipfile

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare Python: use the copy vendored in pip
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: What each download measured (wheels, bytes per platform), read by book/workshop.md
RECORD = ROOT / "tools" / "wheelhouse-sizes.json"
PYTHON = "3.11"  # the wheels are for CPython 3.11, the course's reference Python

#: platform -> (pip --platform tags, environment markers of the target, who it is for)
PLATFORMS = {
    "linux": (
        # manylinux tags up to glibc 2.35: Ubuntu 22.04 or later, Debian 12, the devcontainer
        ["manylinux_2_%d_x86_64" % minor for minor in range(35, 4, -1)]
        + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"],
        {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
         "platform_machine": "x86_64"},
        "Linux x86_64 with glibc 2.35 or later (Ubuntu 22.04+, Debian 12+)",
    ),
    "macos": (
        ["macosx_14_0_arm64"],  # pip also accepts the older macOS tags and universal2
        {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
         "platform_machine": "arm64"},
        "macOS 14 or later on Apple silicon (arm64)",
    ),
    "windows": (
        ["win_amd64"],
        {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
         "platform_machine": "AMD64"},
        "Windows 10/11 on x86_64 (amd64)",
    ),
}


def run(command):
    """Run `command`; raise SystemExit naming it if it fails."""
    shown = " ".join("PIP_FOR_TARGET" if part == PIP_FOR_TARGET else part for part in command)
    print("wheelhouse:", shown, flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"wheelhouse: FAILED: {shown}")


def pip(*args):
    """Run pip of this Python with `args`."""
    run([sys.executable, "-m", "pip", *args])


#: pip with the target's environment markers: ``python -c PIP_FOR_TARGET '{markers}' ARGS``
PIP_FOR_TARGET = """
import json, sys
from pip._vendor.packaging import markers
target = json.loads(sys.argv[1])
host = markers.default_environment
markers.default_environment = lambda: {**host(), **target}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


#: Pins published only as a source archive, pure Python: built once here into a wheel that
#: installs on every platform (``py3-none-any``), since ``--only-binary`` cannot fetch them.
PURE_PYTHON_SDISTS = ("jieba",)


def pure_python_sdists():
    """The requirement lines of `PURE_PYTHON_SDISTS`, as pinned in requirements.txt."""
    found = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        spec = line.split("#")[0].strip()
        if spec and not spec.startswith("-") and (
                canonicalize_name(Requirement(spec).name) in PURE_PYTHON_SDISTS):
            found.append(spec)
    return found


def requirements_without_editable(folder):
    """requirements.txt minus `-e` lines and pure-Python sdists, plus build requirements."""
    sdists = pure_python_sdists()
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
             if not line.strip().startswith(("-e", "--editable"))
             and line.split("#")[0].strip() not in sdists]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    path = pathlib.Path(folder) / "requirements-wheels.txt"
    path.write_text("\n".join(lines + ["# build backend of the course package (-e .)", *build])
                    + "\n")
    return path


def target_environment(name):
    """Marker environment of the target platform and Python (for evaluating dependencies)."""
    environment = default_environment()
    environment.update(PLATFORMS[name][1])
    environment.update(python_version=PYTHON, python_full_version=f"{PYTHON}.0",
                       implementation_name="cpython", platform_python_implementation="CPython")
    return environment


def wheel_metadata(wheel):
    """(canonical name, list of Requires-Dist strings) of one wheel file."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist()
                    if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    return canonicalize_name(metadata["Name"]), metadata.get_all("Requires-Dist") or []


def missing_requirements(dest, environment):
    """Requirements the wheels in `dest` have on the target that no wheel there provides.

    Markers are evaluated for the target `environment`, with the extras that other wheels ask
    of a package (``bleach[css]``), to a fixed point.
    """
    wheels = dict(wheel_metadata(wheel) for wheel in pathlib.Path(dest).glob("*.whl"))
    extras, missing, changed = {}, set(), True
    while changed:
        changed = False
        for name, requires in wheels.items():
            for extra in ["", *sorted(extras.get(name, ()))]:
                for line in requires:
                    requirement = Requirement(line)
                    if requirement.marker and not requirement.marker.evaluate(
                            {**environment, "extra": extra}):
                        continue
                    needed = canonicalize_name(requirement.name)
                    if needed not in wheels:
                        requirement.marker = None
                        missing.add(str(requirement))
                    elif not requirement.extras <= extras.setdefault(needed, set()):
                        extras[needed] |= requirement.extras
                        changed = True
    return sorted(missing)


def download(name, dest):
    """Download every wheel the course needs on platform `name` into `dest`; the measurements.

    The folder is rebuilt: wheels from an earlier download (other pins) are removed first.
    """
    tags, _, label = PLATFORMS[name]
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    environment = target_environment(name)
    with tempfile.TemporaryDirectory() as folder:
        run([sys.executable, "-c", PIP_FOR_TARGET, json.dumps(environment), "download",
             "--only-binary=:all:", "--python-version", PYTHON, "--implementation", "cp",
             *(f"--platform={tag}" for tag in tags), "--dest", str(dest),
             "-r", str(requirements_without_editable(folder))])
    pip("wheel", "--no-deps", "--wheel-dir", str(dest), *pure_python_sdists())
    missing = missing_requirements(dest, environment)
    if missing:
        raise SystemExit(f"wheelhouse: {name}: the wheels need {', '.join(missing)}, "
                         "which the resolution left out")
    wheels = sorted(dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"wheelhouse: {name} ({label}): {len(wheels)} wheels, {size / 1e6:.0f} MB in {dest}",
          flush=True)
    return {"label": label, "wheels": len(wheels), "bytes": size,
            "largest": max(((w.name, w.stat().st_size) for w in wheels), key=lambda t: t[1])}


def requirements_sha256():
    """Hash of requirements.txt: tells whether a record was measured for the current pins."""
    return hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()


def record(name, measured, path=RECORD):
    """Write one platform's measurement into the JSON record at `path` (others are kept)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    if data.get("requirements_sha256") != requirements_sha256():
        data = {}  # measured for other pins: start afresh
    data.update(python=PYTHON, requirements_sha256=requirements_sha256())
    data.setdefault("platforms", {})[name] = measured
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def this_platform():
    """The wheelhouse platform of the running machine, or SystemExit naming what it is."""
    machine = platform.machine().lower()
    found = {("linux", "x86_64"): "linux", ("darwin", "arm64"): "macos",
             ("win32", "amd64"): "windows"}.get((sys.platform, machine))
    if found is None:
        raise SystemExit(f"wheelhouse: no wheelhouse for {sys.platform} {machine}; the "
                         f"platforms are {', '.join(PLATFORMS)} (use --platform)")
    return found


def install(name, dest):
    """Install the course from `dest` only, with pip: no package index is contacted."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" != PYTHON:
        raise SystemExit(f"wheelhouse: the wheels are for Python {PYTHON}, this is Python "
                         f"{platform.python_version()}; make the course's environment with "
                         f"python{PYTHON} -m venv .venv")
    if not any(dest.glob("*.whl")):
        raise SystemExit(f"wheelhouse: no wheels in {dest}; run "
                         f"python tools/wheelhouse.py download --platform {name} first")
    pip("install", "--no-index", "--find-links", str(dest), "-r", str(ROOT / "requirements.txt"))


def main(argv=None):
    """Command line: download or install (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("download", "install"))
    parser.add_argument("--platform", choices=(*PLATFORMS, "all"),
                        help="download: default all; install: default this machine's")
    parser.add_argument("--dest", type=pathlib.Path, default=ROOT / "wheelhouse",
                        help="the wheelhouse folder (default: wheelhouse/ in the repository)")
    args = parser.parse_args(argv)
    if args.command == "download":
        names = list(PLATFORMS) if args.platform in (None, "all") else [args.platform]
        for name in names:
            record(name, download(name, args.dest / name))
    else:
        name = this_platform() if args.platform in (None, "all") else args.platform
        install(name, args.dest / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
