"""explain() on examples/office.toml: the four calls examples/README.md walks through."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers_routing import NOW, binding

from sipfork.config import Config, load_config
from sipfork.routing.explain import explain

REPO = Path(__file__).resolve().parents[2]
REGISTRATIONS = {"alice": [binding("alice", 5062)], "bob": [binding("bob", 5064)]}  # carol's phone is off


@pytest.fixture(scope="module")
def office() -> Config:
    return load_config(REPO / "examples" / "office.toml")


def run(config: Config, *, to: str = "022166966966", caller: str | None = "+4930123456", at: str,
        registrations: dict = REGISTRATIONS) -> list[str]:  # type: ignore[type-arg]
    text = explain(config, dialled=to, caller=caller, at=dt.datetime.fromisoformat(at),
                   registrations=registrations, now=NOW)
    return text.splitlines()


def block(lines: list[str], header: str) -> list[str]:
    """The lines of one rule, from its header to the blank line."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = lines.index("", start)
    return lines[start:end]


def test_office_hours(office: Config) -> None:
    lines = run(office, at="2026-03-02 10:00")
    assert lines[0] == "Call to 022166966966 (number +4922166966966) from +4930123456, Mon 2026-03-02 10:00 Europe/Berlin"
    assert "  rule 1 (always, callers anonymous): caller +4930123456 not in filter" in lines
    assert "  rule 4 (date 2026-12-24..2026-12-26, 2026-12-31, 2027-01-01): not today (2026-03-02)" in lines
    assert block(lines, "rule 2 ") == [
        "rule 2 (schedule mon-fri 08:00-18:00): rings in parallel for 25s",
        "     0s  ring alice (sip:alice@127.0.0.1:5062)  for 25s",
        "     0s  ring bob (sip:bob@127.0.0.1:5064)  for 25s",
        "    10s  ring +491701234567 via trunk  for 15s",
        "  no registered device: carol (in group:office)",
        "  on no-answer (after 25s) or busy: go to rule 3 (schedule mon-fri 08:00-18:00)",
        "  on unreachable: otherwise: forward to sip:mailbox@127.0.0.1:5090",
    ]
    assert block(lines, "rule 3 ") == [
        "rule 3 (schedule mon-fri 08:00-18:00): rings in parallel for 20s",
        "     0s  ring +491701234567 via trunk  for 20s",
        "  on no-answer (after 20s), busy or unreachable: otherwise: forward to sip:mailbox@127.0.0.1:5090",
    ]
    assert lines[-1] == "otherwise: forward to sip:mailbox@127.0.0.1:5090"


def test_evening(office: Config) -> None:
    lines = run(office, at="2026-03-02 20:00")
    assert "  rule 2 (schedule mon-fri 08:00-18:00): not now (Mon 20:00)" in lines
    assert "  rule 3 (schedule mon-fri 08:00-18:00): not now (Mon 20:00)" in lines
    assert "No rule applies." in lines
    assert not any("ring " in line for line in lines)
    assert lines[-1] == "otherwise: forward to sip:mailbox@127.0.0.1:5090"


def test_holiday(office: Config) -> None:
    lines = run(office, at="2026-12-24 10:00")
    assert lines[0].endswith("Thu 2026-12-24 10:00 Europe/Berlin")
    rules = [line for line in lines if line.startswith("rule ")]
    assert rules[0] == "rule 4 (date 2026-12-24..2026-12-26, 2026-12-31, 2027-01-01): rings one after another until answered"
    assert block(lines, "rule 4 ")[1:] == [
        "     0s  ring +491701234567 via trunk  for 20s",
        "    20s  ring sip:mailbox@127.0.0.1:5090  until answered",
        "  on busy or unreachable: go to rule 2 (schedule mon-fri 08:00-18:00)",
    ]


def test_holiday_on_a_saturday_rings_only_the_holiday_rule(office: Config) -> None:
    lines = run(office, at="2026-12-26 15:00")  # Saturday
    assert [line for line in lines if line.startswith("rule ")] == [
        "rule 4 (date 2026-12-24..2026-12-26, 2026-12-31, 2027-01-01): rings one after another until answered"
    ]
    assert "  on busy or unreachable: otherwise: forward to sip:mailbox@127.0.0.1:5090" in lines


def test_anonymous(office: Config) -> None:
    lines = run(office, caller=None, at="2026-03-02 10:00")
    assert lines[0].startswith("Call to 022166966966 (number +4922166966966) from anonymous,")
    assert block(lines, "rule 1 ") == [
        "rule 1 (always, callers anonymous): rings in parallel until answered",
        "     0s  ring sip:mailbox@127.0.0.1:5090  until answered",
        "  on busy or unreachable: go to rule 2 (schedule mon-fri 08:00-18:00)",
    ]
    assert not any(line.startswith("  rule 1") for line in lines)  # rule 1 is not among those that do not apply


def test_nobody_registered(office: Config) -> None:
    lines = run(office, at="2026-03-02 10:00", registrations={})
    assert block(lines, "rule 2 ") == [
        "rule 2 (schedule mon-fri 08:00-18:00): rings in parallel for 25s",
        "    10s  ring +491701234567 via trunk  for 15s",
        "  no registered device: group:office",
        "  on no-answer (after 25s) or busy: go to rule 3 (schedule mon-fri 08:00-18:00)",
        "  on unreachable: otherwise: forward to sip:mailbox@127.0.0.1:5090",
    ]


def test_extension_without_device(office: Config) -> None:
    lines = run(office, to="13", caller="alice", at="2026-03-02 10:00")
    assert lines[0] == "Call to 13 (user carol) from alice, Mon 2026-03-02 10:00 Europe/Berlin"
    assert block(lines, "carol: ") == [
        "carol: rings in parallel for 30s",
        "  no registered device: carol",
        "  nothing rings: the rule ends at once as unreachable",
        "  on unreachable: otherwise: answer the best response (486 when all were busy, else 480)",
    ]


def test_user_call(office: Config) -> None:
    lines = run(office, to="alice", caller="bob", at="2026-03-02 10:00")
    assert "     0s  ring alice (sip:alice@127.0.0.1:5062)  for 30s" in lines


def test_external_numbers(office: Config) -> None:
    # from outside (the trunk): refused, nothing leaves through the gateway
    lines = run(office, to="+4930999", caller="+4930123456", at="2026-03-02 10:00")
    assert lines[2].startswith("refused: 403 Forbidden")
    # from one of our users: through the trunk
    lines = run(office, to="+4930999", caller="alice", at="2026-03-02 10:00")
    assert "     0s  ring +4930999 via trunk  until answered" in lines


def test_unknown(office: Config) -> None:
    lines = run(office, to="dave", at="2026-03-02 10:00")
    assert lines[2] == "refused: 404 Not Found: dave is no user, extension or number of this PBX"


def test_readme_timelines_are_current(office: Config) -> None:
    """Every timeline in examples/README.md is what explain() prints for the command above it."""
    import re
    import shlex

    readme = (REPO / "examples" / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", readme, flags=re.S)
    checked = 0
    for command, output in zip(blocks, blocks[1:]):
        if not command.startswith("sipfork explain") or not output.startswith("Call to"):
            continue
        words = shlex.split(command)
        options = dict(zip(words[2::2], words[3::2]))
        caller = options.get("--from")
        lines = run(office, to=options["--to"], caller=None if caller == "anonymous" else caller, at=options["--at"])
        assert "\n".join(lines) == output.rstrip("\n")
        checked += 1
    assert checked == 4
