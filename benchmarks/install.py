"""Install what the benchmark needs: SIPp, Kamailio, dumpcap (Debian packages)
and matplotlib / pytest-benchmark (into the running virtualenv).

Debian packages come through apt-get (after one `apt-get update`), without
prompts: DEBIAN_FRONTEND=noninteractive and wireshark-common's setuid
question preseeded to "no" (the harness captures as root).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

# program -> Debian package that ships it
PROGRAMS = {
    "sipp": "sip-tester",
    "kamailio": "kamailio",
    "dumpcap": "tshark",
}

PYTHON_PACKAGES = {  # import name -> pip requirement
    "matplotlib": "matplotlib>=3.8",
    "pytest_benchmark": "pytest-benchmark>=4.0",
}


class InstallError(RuntimeError):
    pass


def missing_programs(programs: list[str]) -> list[str]:
    return [p for p in programs if shutil.which(p) is None and not _in_sbin(p)]


def _in_sbin(program: str) -> bool:
    return any(os.access(f"{d}/{program}", os.X_OK) for d in ("/usr/sbin", "/sbin"))


def program_path(program: str) -> str:
    found = shutil.which(program)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin"):
        if os.access(f"{d}/{program}", os.X_OK):
            return f"{d}/{program}"
    raise InstallError(f"{program} is not installed (Debian package {PROGRAMS.get(program, '?')})")


def ensure_programs(programs: list[str], *, log=print) -> None:
    """apt-get install the Debian packages of the missing programs."""
    missing = missing_programs(programs)
    if not missing:
        return
    packages = sorted({PROGRAMS[p] for p in missing})
    if os.geteuid() != 0:
        raise InstallError(
            f"missing {', '.join(missing)}; run as root or install: apt-get install {' '.join(packages)}"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {' '.join(packages)} (apt-get update first)")
    _run(["apt-get", "update", "-qq"], env)
    if "tshark" in packages:
        subprocess.run(
            ["debconf-set-selections"],
            input=b"wireshark-common wireshark-common/install-setuid boolean false\n",
            check=True,
            env=env,
        )
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env)
    still = missing_programs(programs)
    if still:
        raise InstallError(f"still missing after apt-get install: {', '.join(still)}")


def ensure_python_packages(modules: list[str], *, log=print) -> None:
    """pip install (into this interpreter's environment) what cannot be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    requirements = [PYTHON_PACKAGES[m] for m in missing]
    log(f"pip install {' '.join(requirements)}")
    _run([sys.executable, "-m", "pip", "install", "--quiet", *requirements], dict(os.environ))
    importlib.invalidate_caches()


def _run(cmd: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    if result.returncode != 0:
        tail = result.stdout.decode(errors="replace")[-2000:]
        raise InstallError(f"{' '.join(cmd)} failed ({result.returncode}):\n{tail}")
