"""Fixtures for end-to-end tests with real pjsua2 phones and a running sipfork.

- ``phone_factory(name, **options) -> Phone``: a phone in its own process
  (options as `Phone.start`: local_port, transport, ipv6, auto_answer_after,
  auto_reject, auto_ringing); all are closed after the test.
- ``proxy_factory(config=None, *, ipv6=False, ...) -> RunningProxy``: sipfork on
  a proxy.toml in tmp_path, listening on a free port (UDP and TCP on
  127.0.0.1, plus [::1] with ipv6=True), ready when it answers OPTIONS with
  200. ``config`` is None (users alice, bob, carol, dave with passwords
  ``<name>-secret`` and extensions 11-14), a dict of `render_config` arguments
  (``{"users": {...}, "numbers": [...], "groups": [...], "gateways": [...],
  "proxy": {...}, "extra": "..."}``) or TOML text (``$port``/``$host``/
  ``$data_dir`` are filled in; listen and data_dir are added when missing).
  ``args`` are added to the command line (e.g. ``["-v"]``, ``["--clock",
  "2026-01-05 10:00"]``); ``command`` replaces ``python -m sipfork run -c
  {config}``; ``port`` listens there instead of on a free port. Stopped
  after the test (after the phones, so they can unregister); a proxy that
  died on its own fails the test.
- ``proxy``: ``proxy_factory()`` with the default users.

When a test fails, the tails of the phone and proxy logs are printed with it.
An exception inside a phone's pjsua2 callback (a harness bug) fails the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .phones import Phone, RunningProxy, close_all, prepare_config


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.fixture
def phone_factory(
    tmp_path: Path, request: pytest.FixtureRequest, proxy_factory: Callable[..., RunningProxy]
) -> Iterator[Callable[..., Phone]]:
    # Depends on proxy_factory so that phones close (and unregister) before the proxy stops.
    phones: list[Phone] = []
    log_dir = tmp_path / "phones"

    def make(name: str, **options: Any) -> Phone:
        options.setdefault("log_dir", log_dir)
        phone = Phone.start(name, **options)
        phones.append(phone)
        return phone

    yield make
    if _failed(request):
        for phone in phones:
            print(f"\n=== phone {phone.name} ({phone.uri}) ===\n{phone.log_tail(60)}")
    close_all(phones)
    errors = [(phone.name, ev.where, ev.error) for phone in phones for ev in phone.events("phone_error")]
    if errors:
        name, where, error = errors[0]
        pytest.fail(f"phone {name}: Python error in pjsua2 callback {where} (a harness bug):\n{error}")


@pytest.fixture
def proxy_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., RunningProxy]]:
    proxies: list[RunningProxy] = []

    def make(
        config: str | Mapping[str, Any] | None = None,
        *,
        ipv6: bool = False,
        args: list[str] | tuple[str, ...] = (),
        command: list[str] | None = None,
        ready_timeout: float = 10.0,
        port: int | None = None,
    ) -> RunningProxy:
        directory = tmp_path / (f"proxy{len(proxies) + 1}" if proxies else "proxy")
        path, facts = prepare_config(config, directory, ipv6=ipv6, port=port)
        running = RunningProxy(
            path,
            host=facts["host"],
            port=facts["port"],
            host6=facts["host6"],
            data_dir=facts["data_dir"],
            log_path=directory / "sipfork.log",
            users=facts["users"],
            domain=facts["domain"],
            command=command,
            args=args,
            ready_timeout=ready_timeout,
        )
        proxies.append(running)
        return running.start()

    yield make
    died = [p for p in proxies if p.exited_unexpectedly]
    if _failed(request) or died:
        for running in proxies:
            print(f"\n=== {running!r} ===\n{running.log_tail(80)}")
    for running in proxies:
        running.stop()
    if died:
        pytest.fail(f"sipfork exited on its own during the test (exit code {died[0].returncode}); see its log above")


@pytest.fixture
def proxy(proxy_factory: Callable[..., RunningProxy]) -> RunningProxy:
    return proxy_factory()
