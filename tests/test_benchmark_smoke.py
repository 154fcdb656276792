"""The benchmark harness's smoke run: SIPp registers three contacts with
sipfork (digest MD5) and places 20 calls at 10 calls/s from a trusted
gateway address; every call must complete (INVITE forked to the three
contacts, one answers, the proxy cancels the other two, ACK and BYE through
the Record-Route).

SIPp comes from Debian's sip-tester, which `make test` installs.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the harness lives in benchmarks/ beside the package
    sys.path.insert(0, str(ROOT))

from benchmarks import runner  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp not installed (make test installs sip-tester)")
def test_smoke_calls_through_sipfork_all_succeed(tmp_path):
    summary = runner.run_smoke(calls=20, rate=10.0, workdir=tmp_path)
    runner.print_smoke(summary)
    assert summary.get("error") is None, summary.get("error")
    assert summary["completed"] == 20, summary
    assert summary["failed"] == 0, summary["first_errors"]
    assert summary["ok"], summary
