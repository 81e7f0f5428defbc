"""deployments/system_packages.sh: what a user without root is told, and that present packages pass."""

import os
import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "deployments" / "system_packages.sh"


def _run(*specs: str, as_nobody: bool) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(SCRIPT), *specs]
    if as_nobody and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_without_root_it_prints_the_exact_install_line() -> None:
    result = _run("bash", "llmr-no-such-package:llmr-no-such-command", as_nobody=True)
    assert result.returncode == 1
    assert "sudo apt-get install -y llmr-no-such-package" in result.stderr
    assert "bash" not in result.stderr.split("install them with:")[1]  # present packages are not listed


def test_nothing_to_do_when_every_command_exists() -> None:
    result = _run("bash", "coreutils:ls", as_nobody=False)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_make_test_installs_every_command_the_tests_call() -> None:
    """A command the tests look up on PATH must come with `make test` on a fresh machine; rclone
    was once missing here, and only machines where it had been installed by hand passed."""
    root = SCRIPT.parents[1]
    makefile = (root / "Makefile").read_text()
    specs = {}
    for name in ("PLATFORM_PACKAGES", "TEST_PACKAGES"):
        line = next(line for line in makefile.splitlines() if line.startswith(f"{name} :="))
        specs[name] = line.split(":=", 1)[1].split()
    listed = {spec.split(":", 1)[0] for spec in specs["PLATFORM_PACKAGES"]}
    listed |= {spec.split(":", 1)[0] for spec in specs["TEST_PACKAGES"] if not spec.startswith("$(")}
    called = set()
    for path in (root / "tests").rglob("*.py"):
        called |= set(re.findall(r'shutil\.which\("([\w.-]+)"\)', path.read_text()))
    assert called, "the scan found no shutil.which() calls: the pattern no longer matches the tests"
    assert called <= listed, f"called by tests but not installed by `make test`: {sorted(called - listed)}"
