"""The command line as an admin uses it: check, explain, registrations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sipfork(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sipfork", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_check_accepts_the_shipped_proxy_toml_and_says_what_it_understood() -> None:
    result = sipfork("check", "-c", "proxy.toml")
    assert result.returncode == 0, result.stderr
    assert "proxy.toml: OK" in result.stdout
    assert "alice@pbx.local (extension 11)" in result.stdout
    assert "group office: alice, bob" in result.stdout


def test_check_accepts_the_office_example() -> None:
    result = sipfork("check", "-c", "examples/office.toml")
    assert result.returncode == 0, result.stderr
    assert "gateway trunk: sip:127.0.0.1:5080" in result.stdout


def test_check_names_the_key_and_line_of_a_mistake(tmp_path: Path) -> None:
    text = (ROOT / "proxy.toml").read_text().replace('type = "always"', 'type = "schedule"\nschedule = ["mon-fry 8-18"]', 1)
    broken = tmp_path / "proxy.toml"
    broken.write_text(text)
    line = next(number for number, content in enumerate(text.splitlines(), 1) if "mon-fry" in content)
    result = sipfork("check", "-c", str(broken))
    assert result.returncode == 2
    assert f"proxy.toml:{line}:" in result.stderr
    assert "schedule" in result.stderr and "mon-fry 8-18" in result.stderr


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = sipfork("check", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_explain_prints_the_timeline_of_a_call() -> None:
    result = sipfork("explain", "-c", "examples/office.toml", "--to", "+4922166966966", "--from", "anonymous",
                     "--at", "2026-12-01 10:00")
    assert result.returncode == 0, result.stderr
    assert "rule 1 (always, callers anonymous)" in result.stdout
    assert "sip:mailbox@127.0.0.1:5090" in result.stdout


def test_registrations_on_a_fresh_data_dir(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text((ROOT / "proxy.toml").read_text())
    result = sipfork("registrations", "-c", str(config))
    assert result.returncode == 0
    assert "no registrations" in result.stdout
