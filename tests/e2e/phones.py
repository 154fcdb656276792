"""Real SIP phones (pjsua2) for end-to-end tests, and a running sipfork proxy.

Each `Phone` drives one pjsua2 user agent in its own child process (a fresh
interpreter running this file, talking over a socketpair; never fork):
two phones of one user must not share a pjsua2 endpoint, because the forked
INVITEs carry the same Call-ID, From tag and CSeq and one endpoint answers the
second with 482 (merged request). The phone logic itself is
``examples/softphone.py`` (`PhoneCore`), which the child loads by path; this
module only adds the process, the pipe and a synchronous, event-based API.

Everything a phone sees arrives as an `Event` in its event list; tests wait
for events (`Phone.wait_for`) and never sleep. `wait_for` hands out each event
once (a second wait for the same thing returns the next such event), so match
on ``call=`` or ``role=`` when several calls are about. Event kinds and fields:

``reg_state``      reg, code, reason, expiration, registered (bool), uri
``incoming_call``  call, from_uri, from_user, from_display, to_uri, to_user,
                   request_uri, sip_call_id, headers, text, peer
``call_state``     call, state (CALLING, INCOMING, EARLY, CONNECTING, CONFIRMED,
                   DISCONNECTED), status (last SIP status code), reason, role
                   (caller/callee), remote_uri, local_uri, sip_call_id
``sip_rx``/``sip_tx``  every SIP message received/sent: method, request_uri
                   (requests), status, reason (responses), headers, body, cseq,
                   cseq_method, sip_call_id, call (the call handle if known),
                   transport, peer, text (the whole message)
``auto_action``    call, action (ringing/answer/reject/challenge), code, error
``phone_error``    where, error (a Python traceback from a pjsua2 callback)

Every event has ``kind``, ``seq`` and ``t`` (time.monotonic() in the phone
process when it happened; the clock is shared between processes on Linux).
``headers`` is a `Headers`: case-insensitive, ``headers["Reason"]`` is the
first value, ``headers.get_all("Via")`` all of them.

`RunningProxy` runs ``python -m sipfork run -c FILE`` on a generated
configuration (`render_config`) and waits until it answers OPTIONS.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SOFTPHONE_PATH = REPO_ROOT / "examples" / "softphone.py"
_CHILD_FLAG = "--phone-child"

DEFAULT_TIMEOUT = 10.0


class PhoneTimeout(AssertionError, TimeoutError):
    """A phone or proxy did not do what a test waited for in time."""


class PhoneCommandError(AssertionError):
    """The phone process could not carry out a command (no such call, pjsua2 error...)."""


class PhoneDied(AssertionError):
    """The phone's child process is gone."""


# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1", *, udp: bool = True, tcp: bool = True, also: Iterable[str] = ()) -> int:
    """A port number free for UDP and TCP on ``host`` (and on every host in ``also``).

    The sockets are closed again; the caller binds the port. Numbers already
    handed out by this process are never handed out twice.
    """
    hosts = [host, *also]
    for _ in range(200):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        with _handed_out_lock:
            if port in _handed_out:
                continue
        try:
            for h in hosts:
                fam = socket.AF_INET6 if ":" in h else socket.AF_INET
                kinds = ([socket.SOCK_DGRAM] if udp else []) + ([socket.SOCK_STREAM] if tcp else [])
                for kind in kinds:
                    with socket.socket(fam, kind) as sock:
                        if kind == socket.SOCK_STREAM:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.bind((h, port))
        except OSError:
            continue
        with _handed_out_lock:
            _handed_out.add(port)
        return port
    raise OSError(f"no free port on {hosts}")


_pjsua2_ipv6: bool | None = None


def pjsua2_has_ipv6() -> bool:
    """Whether the installed pjsua2 can run IPv6 phones (``Phone.start(ipv6=True)``).

    Asked once per test session, of ``examples/softphone.py --check-ipv6``.
    """
    global _pjsua2_ipv6
    if _pjsua2_ipv6 is None:
        probe = subprocess.run(
            [sys.executable, str(SOFTPHONE_PATH), "--check-ipv6"], capture_output=True, timeout=60, cwd=str(REPO_ROOT)
        )
        _pjsua2_ipv6 = probe.returncode == 0
    return _pjsua2_ipv6


def digest_response(authorization: str, *, password: str, method: str = "INVITE") -> tuple[dict[str, str], str]:
    """The parameters of an MD5 ``Authorization``/``Proxy-Authorization``
    value and the response it should carry for ``password`` (RFC 2617, with
    or without qop=auth): ``params["response"] == expected`` when right."""
    import hashlib
    import re

    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "digest":
        raise AssertionError(f"not a digest credential: {authorization!r}")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)}

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{params['username']}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{params['uri']}")
    if params.get("qop"):
        expected = md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}")
    else:
        expected = md5(f"{ha1}:{params['nonce']}:{ha2}")
    return params, expected


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """SIP headers in order, looked up case-insensitively; a name maps to its first value."""

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._pairs = [(str(name), str(value)) for name, value in pairs]

    def __getitem__(self, name: str) -> str:
        lowered = name.lower()
        for key, value in self._pairs:
            if key.lower() == lowered:
                return value
        raise KeyError(f"no {name!r} header (headers: {', '.join(self.names())})")

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self._pairs if key.lower() == lowered]

    def names(self) -> list[str]:
        seen: dict[str, None] = {}
        for key, _ in self._pairs:
            seen.setdefault(key, None)
        return list(seen)

    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(key.lower() == name.lower() for key, _ in self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


class Event:
    """One thing a phone saw. Fields are attributes: ``ev.status``, ``ev.headers['Reason']``."""

    __slots__ = ("kind", "seq", "fields", "consumed")

    def __init__(self, kind: str, seq: int, fields: dict[str, Any]) -> None:
        if isinstance(fields.get("headers"), list):
            fields["headers"] = Headers(fields["headers"])
        self.kind = kind
        self.seq = seq
        self.fields = fields
        self.consumed = False

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.kind} event has no field {name!r} (fields: {', '.join(self.fields)})") from None

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def matches(self, kind: str, match: Mapping[str, Any]) -> bool:
        if self.kind != kind:
            return False
        for key, wanted in match.items():
            if key not in self.fields:
                return False
            value = self.fields[key]
            if callable(wanted):
                if not wanted(value):
                    return False
            elif value != wanted:
                return False
        return True

    def summary(self) -> str:
        shown = {k: v for k, v in self.fields.items() if k not in ("text", "headers", "body", "t")}
        if self.kind.startswith("sip_"):
            shown = {k: v for k, v in shown.items() if v is not None and k in ("method", "status", "reason", "cseq_method", "call", "peer")}
        inner = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"#{self.seq} {self.kind}({inner})"

    def __repr__(self) -> str:
        return f"<Event {self.summary()}>"


def _describe_match(kind: str, match: Mapping[str, Any]) -> str:
    parts = [f"{k}={getattr(v, '__name__', 'predicate') if callable(v) else repr(v)}" for k, v in match.items()]
    return f"{kind}({', '.join(parts)})" if parts else kind


# --------------------------------------------------------------------------
# The phone (test-process side)
# --------------------------------------------------------------------------


class Phone:
    """A pjsua2 SIP phone in a child process, driven synchronously.

    Use `Phone.start(...)` (or the ``phone_factory`` fixture). Commands return
    when the child has carried them out; their SIP outcome arrives as events.
    `wait_for` hands out each event once: two waits for the same kind and
    match return two different events (use `events` to look at all).
    """

    _counter = itertools.count(1)

    def __init__(self) -> None:  # use Phone.start()
        self.name = ""
        self.host = ""
        self.port = 0
        self.transport = "udp"
        self.ipv6 = False
        self.uri = ""
        self.log_path: Path | None = None
        self._proc: Any = None
        self._conn: Any = None
        self._events: list[Event] = []
        self._cond = threading.Condition()
        self._replies: dict[int, tuple[bool, Any, int]] = {}
        self._req_ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._dead: str | None = None
        self._ready: dict[str, Any] | None = None
        self._closed = False
        self._last_seq = 0

    # ---- life cycle -----------------------------------------------------

    @classmethod
    def start(
        cls,
        name: str,
        *,
        local_port: int = 0,
        transport: str = "udp",
        ipv6: bool = False,
        auto_answer_after: float | None = None,
        auto_reject: int | None = None,
        auto_ringing: bool = True,
        nat_contact: bool = False,
        host: str | None = None,
        challenge_first: bool = False,
        challenge_realm: str = "trunk",
        log_dir: str | os.PathLike[str] | None = None,
        start_timeout: float = 20.0,
    ) -> Phone:
        """Start a phone process. ``local_port=0`` lets pjsua2 bind a free port
        (no race with other processes); the phone
        listens on 127.0.0.1 (``::1`` with ``ipv6=True``) with ``transport``.
        Its local URI (``phone.uri``) can be called directly, without a proxy.
        ``nat_contact=True``: over TCP, register the connection's source port
        as Contact (pjsua's default, like a phone behind NAT) instead of the
        listening port.
        ``host``: listen on another loopback address (``"127.0.0.2"``: a
        second machine, e.g. a trunk whose calls come from an ``inbound_from``
        address). ``challenge_first=True``: play a SIP trunk that answers an
        INVITE without credentials with 407 and ``Proxy-Authenticate: Digest
        realm="<challenge_realm>", nonce=…, algorithm=MD5, qop="auth"`` (an
        ``auto_action`` event with action "challenge"); an INVITE with
        ``Proxy-Authorization`` is handled as any call (``digest_response``
        lets the test check it)."""
        from multiprocessing.connection import Connection

        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        phone = cls()
        phone.name = name
        phone.transport = transport
        phone.ipv6 = ipv6
        directory = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir()) / "sipfork-phones"
        directory.mkdir(parents=True, exist_ok=True)
        phone.log_path = directory / f"phone-{name}-{os.getpid()}-{next(cls._counter)}.log"
        config = {
            "name": name,
            "port": local_port,
            "transport": transport,
            "ipv6": ipv6,
            "auto_answer_after": auto_answer_after,
            "auto_reject": auto_reject,
            "auto_ringing": auto_ringing,
            "nat_contact": nat_contact,
            "host": host,
            "challenge_first": challenge_first,
            "challenge_realm": challenge_realm,
            "log_path": str(phone.log_path),
            "softphone_path": str(SOFTPHONE_PATH),
            "parent_pid": os.getpid(),
        }
        # A fresh interpreter per phone (never fork: pjsua2 keeps threads and
        # sockets). This file is its entry point, run by path, so the child
        # neither depends on how the tests imported it nor re-imports the
        # test's __main__ (as multiprocessing's spawn would).
        parent_sock, child_sock = socket.socketpair()
        with open(phone.log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), _CHILD_FLAG, str(child_sock.fileno())],
                    pass_fds=(child_sock.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=str(REPO_ROOT),
                )
            finally:
                child_sock.close()
        phone._proc = proc
        phone._conn = Connection(parent_sock.detach())
        phone._conn.send(config)
        phone._reader = threading.Thread(target=phone._read_loop, name=f"phone-{name}-reader", daemon=True)
        phone._reader.start()
        deadline = time.monotonic() + start_timeout
        with phone._cond:
            while phone._ready is None and phone._dead is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                phone._cond.wait(remaining)
        if phone._ready is None:
            why = phone._dead or f"not ready within {start_timeout}s"
            phone.kill()
            raise PhoneDied(f"phone {name!r} did not start: {why}\n{phone.log_tail()}")
        phone.host = phone._ready["host"]
        phone.port = phone._ready["port"]
        phone.uri = phone._ready["uri"]
        return phone

    def close(self, *, unregister: bool = True, timeout: float = 8.0) -> None:
        """Hang up every call, unregister and stop the process (killed if it
        has not exited within ``timeout``). ``unregister=False`` kills it at
        once instead: a phone that vanishes without a word."""
        self._begin_close(unregister=unregister)
        self._finish_close(timeout)

    def _begin_close(self, *, unregister: bool = True) -> None:
        if self._closed:
            return
        if not unregister:
            self.kill()
            return
        self._closed = True
        if self._dead is not None:
            return
        try:
            self._send_request("shutdown", {"unregister": True})
        except (OSError, EOFError, ValueError):
            pass

    def _finish_close(self, timeout: float = 8.0) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        try:
            self._conn.close()
        except OSError:
            pass
        self._proc = None

    def kill(self) -> None:
        """Kill the phone process at once (a phone that vanishes without a word)."""
        self._closed = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._finish_close(5)

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._dead is None

    def __repr__(self) -> str:
        return f"<Phone {self.name} {self.uri or '(not started)'}>"

    # ---- commands -------------------------------------------------------

    def register(
        self,
        server_host: str,
        server_port: int,
        user: str,
        password: str,
        *,
        domain: str = "pbx.local",
        expires: int = 300,
        transport: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> int:
        """Register ``user@domain`` at ``server_host:server_port`` (also used as
        outbound proxy for calls) and wait for the result: returns the final
        status code (200, 401, 403, ...)."""
        reg_id, seq = self._command(
            "register",
            server_host=server_host,
            server_port=server_port,
            user=user,
            password=password,
            domain=domain,
            expires=expires,
            transport=transport,
        )
        return self._wait("reg_state", timeout, after=seq, match={"reg": reg_id}).code

    def register_at(self, proxy: RunningProxy, user: str, password: str | None = None, **options: Any) -> int:
        """`register` at a `RunningProxy`, with the user's password from its configuration."""
        if password is None:
            if user not in proxy.users:
                raise AssertionError(f"the proxy's configuration has no user {user!r} (users: {sorted(proxy.users)})")
            password = proxy.users[user]
        options.setdefault("domain", proxy.domain)
        return self.register(proxy.host, proxy.port, user, password, **options)

    def unregister(self, *, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Unregister (REGISTER with expires 0) and return the final status code."""
        reg_id, seq = self._command("unregister")
        return self._wait("reg_state", timeout, after=seq, match={"reg": reg_id}).code

    def call(self, uri: str, *, headers: Mapping[str, str] | None = None) -> int:
        """Start a call and return its handle (events carry it as ``call``).
        ``uri`` is a SIP URI, or a user/extension/number at the registered domain."""
        handle, _ = self._command("call", uri=uri, headers=dict(headers or {}))
        return handle

    def answer(self, call: int | None = None, code: int = 200) -> int:
        """Answer a ringing incoming call (the latest if ``call`` is None)."""
        return self._command("answer", call=call, code=code)[0]

    def ringing(self, call: int | None = None, code: int = 180) -> int:
        """Send a provisional response (for phones started with ``auto_ringing=False``)."""
        return self._command("ringing", call=call, code=code)[0]

    def reject(self, call: int | None = None, code: int = 486, *, headers: Mapping[str, str] | None = None) -> int:
        """Reject a ringing incoming call with ``code`` (and ``headers`` in the response)."""
        return self._command("reject", call=call, code=code, headers=dict(headers or {}))[0]

    def hangup(self, call: int | None = None) -> int:
        """Hang up (CANCEL, BYE or 603 as the state needs); the latest live call if None."""
        return self._command("hangup", call=call)[0]

    def hangup_all(self) -> list[int]:
        return self._command("hangup_all")[0]

    def configure(self, **options: Any) -> None:
        """Change what the phone does with the next incoming calls:
        ``auto_answer_after`` (seconds or None), ``auto_reject`` (a status code
        or None), ``auto_ringing`` (bool), ``challenge_first`` (bool)."""
        unknown = set(options) - {"auto_answer_after", "auto_reject", "auto_ringing", "challenge_first"}
        if unknown:
            raise TypeError(f"unknown phone options {sorted(unknown)}")
        self._command("configure", **options)

    def calls(self) -> dict[int, str]:
        """Every call of this phone so far: handle -> pjsua2 state name."""
        return self._command("calls")[0]

    # ---- events ---------------------------------------------------------

    def wait_for(self, kind: str, timeout: float = DEFAULT_TIMEOUT, **match: Any) -> Event:
        """The first not yet handed out event of ``kind`` whose fields equal
        ``match`` (a callable value is a predicate), waiting up to ``timeout``
        seconds. Raises `PhoneTimeout` (an AssertionError) naming what was
        awaited and what the phone saw instead."""
        return self._wait(kind, timeout, after=0, match=match)

    def events(self, kind: str | None = None, **match: Any) -> list[Event]:
        """All events so far (since the last `clear`), of ``kind`` and matching ``match``."""
        with self._cond:
            return [ev for ev in self._events if (kind is None and not match) or ev.matches(kind or ev.kind, match)]

    def assert_no_event(self, kind: str, within: float, **match: Any) -> None:
        """Assert that no (not yet handed out) matching event arrives within ``within`` seconds."""
        deadline = time.monotonic() + within
        with self._cond:
            while True:
                found = self._find(kind, 0, match)
                if found is not None:
                    raise AssertionError(f"{self.name}: unexpected {found!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._dead is not None:
                    return
                self._cond.wait(remaining)

    def clear(self) -> None:
        """Forget all events so far."""
        with self._cond:
            self._events.clear()

    def log_text(self) -> str:
        """The phone process's log (pjsua2's log with every SIP message)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text()
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}" if tail else f"(no log in {self.log_path})"

    # ---- internals ------------------------------------------------------

    def _find(self, kind: str, after: int, match: Mapping[str, Any]) -> Event | None:
        for ev in self._events:
            if ev.seq > after and not ev.consumed and ev.matches(kind, match):
                return ev
        return None

    def _wait(self, kind: str, timeout: float, *, after: int, match: Mapping[str, Any]) -> Event:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                ev = self._find(kind, after, match)
                if ev is not None:
                    ev.consumed = True
                    return ev
                if self._dead is not None:
                    raise PhoneDied(
                        f"{self.name}: waiting for {_describe_match(kind, match)}, but {self._dead}\n{self.log_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PhoneTimeout(self._timeout_message(kind, timeout, match))
                self._cond.wait(remaining)

    def _timeout_message(self, kind: str, timeout: float, match: Mapping[str, Any]) -> str:
        same_kind = [ev for ev in self._events if ev.kind == kind]
        lines = [f"{self.name}: no {_describe_match(kind, match)} event within {timeout}s"]
        if same_kind:
            lines.append(f"{kind} events seen: " + "; ".join(ev.summary() for ev in same_kind[-10:]))
        else:
            lines.append(f"no {kind} events at all")
        recent = [ev.summary() for ev in self._events[-12:]]
        if recent:
            lines.append("last events:\n  " + "\n  ".join(recent))
        lines.append(f"phone log: {self.log_path}")
        return "\n".join(lines)

    def _read_loop(self) -> None:
        conn = self._conn
        why = "the phone process exited"
        try:
            while True:
                message = conn.recv()
                tag = message[0]
                with self._cond:
                    if tag == "event":
                        _, kind, seq, fields = message
                        self._last_seq = seq
                        self._events.append(Event(kind, seq, fields))
                    elif tag == "reply":
                        _, req_id, ok, value, seq = message
                        self._replies[req_id] = (ok, value, seq)
                    elif tag == "ready":
                        self._ready = message[1]
                    elif tag == "fatal":
                        why = f"the phone process failed: {message[1]}"
                    self._cond.notify_all()
        except (EOFError, OSError):
            pass
        except Exception as error:  # a bug in this harness: report it to the waiting test
            why = f"the phone reader failed: {error!r}"
        with self._cond:
            code = None
            if self._proc is not None:
                try:
                    code = self._proc.wait(0.5)
                except subprocess.TimeoutExpired:
                    code = None
            self._dead = f"{why} (exit code {code})" if not self._closed else "the phone was closed"
            self._cond.notify_all()

    def _send_request(self, name: str, kwargs: dict[str, Any]) -> int:
        req_id = next(self._req_ids)
        with self._send_lock:
            self._conn.send(("cmd", req_id, name, kwargs))
        return req_id

    def _command(self, name: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> tuple[Any, int]:
        if self._closed or self._dead is not None:
            raise PhoneDied(f"{self.name}: cannot {name}: {self._dead or 'the phone is closed'}")
        req_id = self._send_request(name, kwargs)
        deadline = time.monotonic() + timeout
        with self._cond:
            while req_id not in self._replies:
                if self._dead is not None:
                    raise PhoneDied(f"{self.name}: no answer to {name}: {self._dead}\n{self.log_tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PhoneTimeout(f"{self.name}: the phone process did not carry out {name} within {timeout}s\n{self.log_tail()}")
                self._cond.wait(remaining)
            ok, value, seq = self._replies.pop(req_id)
        if not ok:
            raise PhoneCommandError(f"{self.name}: {name}({_fmt_kwargs(kwargs)}) failed: {value}")
        return value, seq


def _fmt_kwargs(kwargs: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={'***' if k == 'password' else repr(v)}" for k, v in kwargs.items())


def start_phones(*names: str, **options: Any) -> list[Phone]:
    """Start several phones at once (in parallel: each start takes a process spawn)."""
    results: dict[str, Phone | BaseException] = {}

    def one(name: str) -> None:
        try:
            results[name] = Phone.start(name, **options)
        except BaseException as error:  # handed to the caller below
            results[name] = error

    threads = [threading.Thread(target=one, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = [r for r in results.values() if isinstance(r, BaseException)]
    if failures:
        close_all([r for r in results.values() if isinstance(r, Phone)])
        raise failures[0]
    return [results[name] for name in names]  # type: ignore[misc]


def close_all(phones: Iterable[Phone], *, unregister: bool = True, timeout: float = 8.0) -> None:
    """Close several phones at once (their shutdowns run in parallel)."""
    phones = list(phones)
    for phone in phones:
        phone._begin_close(unregister=unregister)
    for phone in phones:
        phone._finish_close(timeout)


# --------------------------------------------------------------------------
# The phone (child-process side)
# --------------------------------------------------------------------------

_CHILD_COMMANDS = frozenset(
    {"register", "unregister", "call", "answer", "ringing", "reject", "hangup", "hangup_all", "configure", "calls"}
)


def _child_main(fd: int) -> None:
    """Run one PhoneCore, reporting events and answering commands over the
    connection on ``fd``. stdout and stderr are the phone's log file."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the test process; it closes us
    conn = Connection(fd)
    try:
        config = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    log_file = sys.stdout
    log_file.reconfigure(line_buffering=True, errors="replace")
    seq = 0

    def send(message: tuple[Any, ...]) -> None:
        try:
            conn.send(message)
        except (OSError, ValueError):
            raise SystemExit(0) from None

    def on_event(kind: str, fields: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        send(("event", kind, seq, fields))

    def on_log(level: int, text: str) -> None:
        log_file.write(text if text.endswith("\n") else text + "\n")

    import importlib.util

    try:
        spec = importlib.util.spec_from_file_location("sipfork_softphone", config["softphone_path"])
        softphone = importlib.util.module_from_spec(spec)
        sys.modules["sipfork_softphone"] = softphone
        spec.loader.exec_module(softphone)
        core = softphone.PhoneCore(
            config["name"],
            port=config["port"],
            transport=config["transport"],
            ipv6=config["ipv6"],
            on_event=on_event,
            on_log=on_log,
            auto_ringing=config["auto_ringing"],
            auto_answer_after=config["auto_answer_after"],
            auto_reject=config["auto_reject"],
            nat_contact=config["nat_contact"],
            host=config["host"],
            challenge_first=config["challenge_first"],
            challenge_realm=config["challenge_realm"],
        )
        core.start()
    except BaseException as error:  # reported to the test, which raises it
        import traceback

        traceback.print_exc()
        send(("fatal", f"{type(error).__name__}: {error}"))
        log_file.flush()
        os._exit(1)
    send(("ready", core.info()))
    parent_pid = config["parent_pid"]
    running = True
    try:
        while running:
            core.poll(10)
            while running and conn.poll():
                try:
                    _, req_id, name, kwargs = conn.recv()
                except (EOFError, OSError):
                    running = False
                    break
                before = seq  # events the command itself causes come after this
                if name == "shutdown":
                    core.shutdown(unregister=kwargs.get("unregister", True))
                    send(("reply", req_id, True, None, before))
                    running = False
                    break
                if name not in _CHILD_COMMANDS:
                    send(("reply", req_id, False, f"unknown command {name!r}", before))
                    continue
                try:
                    result = getattr(core, name)(**kwargs)
                except softphone.PhoneError as error:
                    send(("reply", req_id, False, str(error), before))
                except Exception as error:  # a harness bug: tell the test, keep the phone alive
                    import traceback

                    traceback.print_exc()
                    send(("reply", req_id, False, f"{type(error).__name__}: {error}", before))
                else:
                    send(("reply", req_id, True, result, before))
            if os.getppid() != parent_pid:
                running = False
    finally:
        if core.started:
            core.shutdown(unregister=False)
        log_file.flush()
        conn.close()
        # Skip interpreter teardown: pjsua2's SWIG objects must not be finalised after libDestroy.
        os._exit(0)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == _CHILD_FLAG:
    _child_main(int(sys.argv[2]))


# --------------------------------------------------------------------------
# Proxy configuration
# --------------------------------------------------------------------------

DEFAULT_USERS: dict[str, dict[str, Any]] = {
    "alice": {"password": "alice-secret", "extension": "11"},
    "bob": {"password": "bob-secret", "extension": "12"},
    "carol": {"password": "carol-secret", "extension": "13"},
    "dave": {"password": "dave-secret", "extension": "14"},
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_table(header: str, table: Mapping[str, Any], out: list[str]) -> None:
    """Write ``[header]`` (or ``[[header]]``) with plain keys first, then sub-arrays of tables."""
    out.append(header)
    nested: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in table.items():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value) and key == "forwarding":
            nested.append((key, list(value)))
        else:
            out.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out.append("")
    name = header.strip("[]")
    for key, items in nested:
        for item in items:
            _toml_table(f"[[{name}.{key}]]", item, out)


def render_config(
    *,
    listen: Iterable[str] = (),
    data_dir: str | os.PathLike[str] | None = None,
    proxy: Mapping[str, Any] | None = None,
    users: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None = None,
    groups: Iterable[Mapping[str, Any]] = (),
    gateways: Iterable[Mapping[str, Any]] = (),
    numbers: Iterable[Mapping[str, Any]] = (),
    extra: str = "",
) -> str:
    """A proxy.toml as text (see /work/shared/CONFIG.md for the keys).

    ``users`` maps a name to its password or to a table
    (``{"alice": "pw"}`` or ``{"alice": {"password": "pw", "extension": "11"}}``),
    or is a list of ``[[user]]`` tables; None means `DEFAULT_USERS` (alice, bob,
    carol, dave with passwords ``<name>-secret`` and extensions 11-14).
    ``groups``, ``gateways`` and ``numbers`` are lists of tables as in the
    configuration (a number's ``forwarding`` list becomes ``[[number.forwarding]]``).
    ``extra`` is appended as it is.
    """
    proxy_table: dict[str, Any] = {"domain": "pbx.local"}
    if listen:
        proxy_table["listen"] = list(listen)
    if data_dir is not None:
        proxy_table["data_dir"] = str(data_dir)
    proxy_table.update(proxy or {})
    out: list[str] = []
    _toml_table("[proxy]", proxy_table, out)
    for user in _user_tables(users):
        _toml_table("[[user]]", user, out)
    for group in groups:
        _toml_table("[[group]]", group, out)
    for gateway in gateways:
        _toml_table("[[gateway]]", gateway, out)
    for number in numbers:
        _toml_table("[[number]]", number, out)
    if extra:
        out.append(extra.strip() + "\n")
    return "\n".join(out)


def _user_tables(users: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    if users is None:
        users = DEFAULT_USERS
    if isinstance(users, Mapping):
        tables = []
        for name, spec in users.items():
            if isinstance(spec, str):
                tables.append({"name": name, "password": spec})
            else:
                tables.append({"name": name, **spec})
        return tables
    return [dict(u) for u in users]


def user_passwords(users: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {u["name"]: u.get("password", "") for u in _user_tables(users)}


# --------------------------------------------------------------------------
# A running proxy
# --------------------------------------------------------------------------


def sip_options(host: str, port: int, *, timeout: float = 0.5, request_uri: str | None = None) -> str | None:
    """Send one OPTIONS over UDP and return the first response's text (None if none came)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        sock.settimeout(timeout)
        local_port = sock.getsockname()[1]
        target = request_uri or f"sip:{_bracket(host)}:{port}"
        token = uuid.uuid4().hex
        request = (
            f"OPTIONS {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {_bracket(host)}:{local_port};branch=z9hG4bK{token[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{_bracket(host)}>;tag={token[16:24]}\r\n"
            f"To: <{target}>\r\n"
            f"Call-ID: {token}@{_bracket(host)}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (host, port))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            sock.settimeout(remaining)
            try:
                data, _ = sock.recvfrom(65535)
            except (TimeoutError, socket.timeout, ConnectionRefusedError, OSError):
                return None
            text = data.decode(errors="replace")
            if not text.startswith("SIP/2.0 1"):  # skip provisional responses
                return text


class RunningProxy:
    """A sipfork process on a generated proxy.toml, with its log captured.

    ``host``/``port`` are where it listens for UDP and TCP (the same port
    number), ``host6`` is ``"::1"`` when it also listens on IPv6. Its output
    (stdout and stderr) is collected in `log` and in ``log_path``.
    """

    def __init__(
        self,
        config_path: Path,
        *,
        host: str,
        port: int,
        host6: str | None,
        data_dir: Path,
        log_path: Path,
        users: Mapping[str, str],
        command: list[str] | None = None,
        args: Iterable[str] = (),
        domain: str = "pbx.local",
        ready_timeout: float = 10.0,
    ) -> None:
        self.config_path = config_path
        self.host = host
        self.port = port
        self.host6 = host6
        self.data_dir = data_dir
        self.log_path = log_path
        self.users = dict(users)
        self.domain = domain
        self.command = [*(command or [sys.executable, "-m", "sipfork", "run", "-c", "{config}"]), *args]
        self.ready_timeout = ready_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None
        self._expected_exit = False
        self.starts = 0

    # ---- life cycle -----------------------------------------------------

    def start(self) -> RunningProxy:
        """Start the process and wait until it answers OPTIONS over UDP with 200."""
        if self.running:
            raise RuntimeError("the proxy is already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        argv = [part.replace("{config}", str(self.config_path)) for part in self.command]
        self.starts += 1
        shown = " ".join(a if len(a) <= 60 and "\n" not in a else "<...>" for a in argv)
        self._append_line(f"--- sipfork start #{self.starts}: {shown} ---")
        self._expected_exit = False
        self._proc = subprocess.Popen(
            argv,
            cwd=str(REPO_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read_output, args=(self._proc,), name="sipfork-log", daemon=True)
        self._reader.start()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._reader.join(2)
                self._expected_exit = True  # reported here, not again at teardown
                raise AssertionError(
                    f"sipfork exited with code {self._proc.returncode} before answering OPTIONS\n{self.log_tail()}"
                )
            last = sip_options(self.host, self.port, timeout=0.1)
            if last is not None and last.startswith("SIP/2.0 200"):
                break
        else:
            self.kill()
            got = f"last response: {last.splitlines()[0]!r}" if last else "no response at all"
            raise AssertionError(
                f"sipfork did not answer OPTIONS on udp {self.host}:{self.port} with 200 within "
                f"{self.ready_timeout}s ({got})\n{self.log_tail()}"
            )
        # The TCP listener (and IPv6, if configured) comes up with the UDP one; make sure.
        hosts = [self.host] + ([self.host6] if self.host6 else [])
        for host in hosts:
            while True:
                try:
                    with socket.create_connection((host, self.port), timeout=1):
                        break
                except OSError as error:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"sipfork does not accept TCP on {_bracket(host)}:{self.port}: {error}\n{self.log_tail()}") from None
                    with self._cond:  # wait a little for the listener, woken early by new log lines
                        self._cond.wait(0.05)

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> int | None:
        """Stop it (SIGTERM, or SIGKILL with ``kill=True``; SIGKILL anyway after
        ``timeout``) and return its exit code."""
        proc = self._proc
        if proc is None:
            return None
        self._expected_exit = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._append_line(f"--- sipfork did not exit within {timeout}s of SIGTERM: killed ---")
                proc.kill()
                proc.wait(5)
        if self._reader is not None:
            self._reader.join(5)
        self._append_line(f"--- sipfork exited with code {proc.returncode} ---")
        return proc.returncode

    def kill(self) -> int | None:
        return self.stop(kill=True)

    def restart(self, *, kill: bool = False) -> RunningProxy:
        """Stop (SIGTERM, or SIGKILL with ``kill=True``) and start again on the
        same configuration, ports and data_dir."""
        self.stop(kill=kill)
        return self.start()

    def send_signal(self, signum: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise AssertionError("sipfork is not running")
        self._proc.send_signal(signum)

    def reload(self) -> None:
        """Ask the proxy to re-read its configuration (SIGHUP)."""
        self.send_signal(signal.SIGHUP)

    def write_config(self, text: str) -> None:
        """Replace the configuration file (then `reload` or `restart`)."""
        self.config_path.write_text(text)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def exited_unexpectedly(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None and not self._expected_exit

    # ---- addresses ------------------------------------------------------

    def uri(self, transport: str = "udp", *, ipv6: bool = False) -> str:
        host = self.host6 if ipv6 else self.host
        if host is None:
            raise AssertionError("this proxy does not listen on IPv6 (proxy_factory(..., ipv6=True))")
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:{_bracket(host)}:{self.port}{suffix}"

    def options(self, *, ipv6: bool = False, timeout: float = 2.0) -> str | None:
        """Send an OPTIONS and return the response text (None if none came)."""
        host = self.host6 if ipv6 else self.host
        return sip_options(host, self.port, timeout=timeout)

    # ---- log ------------------------------------------------------------

    def _append_line(self, line: str) -> None:
        with self._cond:
            self._lines.append(line)
            self._cond.notify_all()
        with open(self.log_path, "a", errors="replace") as out:
            out.write(line + "\n")

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with open(self.log_path, "a", errors="replace") as out:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                out.write(line + "\n")
                out.flush()
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def log_mark(self) -> int:
        """A position in the log; pass it as ``after`` to look only at what follows."""
        with self._cond:
            return len(self._lines)

    def log_contains(self, text: str, *, after: int = 0) -> bool:
        with self._cond:
            return any(text in line for line in self._lines[after:])

    def wait_for_log(self, text: str, timeout: float = DEFAULT_TIMEOUT, *, after: int = 0) -> str:
        """Wait until a log line (from position ``after``) contains ``text``; return that line."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[after:]:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PhoneTimeout(f"sipfork did not log {text!r} within {timeout}s\n{self.log_tail()}")
                self._cond.wait(remaining)

    def log_tail(self, lines: int = 40) -> str:
        with self._cond:
            tail = self._lines[-lines:]
        return f"--- last lines of the sipfork log ({self.log_path}) ---\n" + "\n".join(tail)

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"<RunningProxy {self.host}:{self.port} {state}>"


def prepare_config(
    config: str | Mapping[str, Any] | None,
    directory: Path,
    *,
    ipv6: bool = False,
    port: int | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Write ``directory/proxy.toml`` listening on a free port (or on ``port``)
    and return its path and facts.

    ``config`` is None (the default users), a dict of `render_config` keyword
    arguments (``users``, ``groups``, ``numbers``, ``gateways``, ``proxy`` (keys
    merged into ``[proxy]``), ``extra``), or TOML text. In text, ``$port``,
    ``$host``, ``$host6`` and ``$data_dir`` are replaced; a ``[proxy]`` table
    without ``listen``/``data_dir`` gets them added, and one is added at the top
    when the text has none.
    """
    import string

    directory.mkdir(parents=True, exist_ok=True)
    host = "127.0.0.1"
    host6 = "::1" if ipv6 else None
    if port is None:
        port = free_port(host, also=[host6] if host6 else [])
    listen = [f"udp:{host}:{port}", f"tcp:{host}:{port}"]
    if host6:
        listen += [f"udp:[{host6}]:{port}", f"tcp:[{host6}]:{port}"]
    data_dir = directory / "var"
    if config is None or isinstance(config, Mapping):
        options = dict(config or {})
        unknown = set(options) - {"users", "groups", "numbers", "gateways", "proxy", "extra"}
        if unknown:
            raise TypeError(f"unknown proxy config keys {sorted(unknown)} (use users, groups, numbers, gateways, proxy, extra)")
        text = render_config(listen=listen, data_dir=data_dir, **options)
        users = user_passwords(options.get("users"))
        domain = dict(options.get("proxy") or {}).get("domain", "pbx.local")
    else:
        text = string.Template(config).safe_substitute(port=port, host=host, host6=host6 or "", data_dir=str(data_dir))
        text = _inject_proxy_keys(text, listen, data_dir)
        users, domain = _facts_from_text(text)
    path = directory / "proxy.toml"
    path.write_text(text)
    return path, {"host": host, "host6": host6, "port": port, "data_dir": data_dir, "users": users, "domain": domain}


def _inject_proxy_keys(text: str, listen: list[str], data_dir: Path) -> str:
    import re

    additions = []
    section = re.search(r"(?ms)^\[proxy\][^\n]*\n(.*?)(?=^\[|\Z)", text)
    body = section.group(1) if section else ""
    if not re.search(r"(?m)^\s*listen\s*=", body):
        additions.append(f"listen = {_toml_value(listen)}")
    if not re.search(r"(?m)^\s*data_dir\s*=", body):
        additions.append(f"data_dir = {_toml_value(str(data_dir))}")
    if not additions:
        return text
    if section is None:
        return "[proxy]\n" + "\n".join(additions) + "\n\n" + text
    insert_at = section.start(1)
    return text[:insert_at] + "\n".join(additions) + "\n" + text[insert_at:]


def _facts_from_text(text: str) -> tuple[dict[str, str], str]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:  # an invalid config may be the test's point
        return {}, "pbx.local"
    users = {u.get("name", ""): u.get("password", "") for u in data.get("user", []) if isinstance(u, dict)}
    proxy = data.get("proxy") if isinstance(data.get("proxy"), dict) else {}
    return users, str(proxy.get("domain", "pbx.local"))
