#!/usr/bin/env python3
"""A SIP softphone on pjsua2, for trying sipfork out and for its end-to-end tests.

Register as alice and wait for calls (answer each after 2 seconds):

    python examples/softphone.py --user alice --password alice-secret \\
        --server 127.0.0.1:5060 --answer-after 2

Register as bob and call extension 11, hanging up 5 seconds after the answer:

    python examples/softphone.py --user bob --password bob-secret \\
        --server 127.0.0.1:5060 --call 11 --hangup-after 5

The phone prints what happens in plain lines ("registered as alice@pbx.local
(200)", "incoming call from bob", "ringing", "call cancelled: SIP;cause=200;
text=\"Call completed elsewhere\"", "connected", "disconnected (487)"). With
--call it exits when that call ends (status 0 if it was answered, 1 if not);
otherwise it runs until Ctrl-C or SIGTERM. It has no audio: pjsua2 runs on a
null sound device.

This file is also the phone core of the test harness (tests/e2e/phones.py):
the harness runs one `PhoneCore` per child process, because two phones of one
user inside one pjsua2 endpoint would see the forked INVITEs (same Call-ID,
From tag and CSeq) as one merged request and answer the second with 482.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import pjsua2 as pj

__all__ = [
    "PhoneCore",
    "PhoneError",
    "parse_log_entry",
    "parse_sip_message",
    "uri_user",
]

STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}

TRANSPORT_TYPES = {
    ("udp", False): pj.PJSIP_TRANSPORT_UDP,
    ("tcp", False): pj.PJSIP_TRANSPORT_TCP,
    ("udp", True): pj.PJSIP_TRANSPORT_UDP6,
    ("tcp", True): pj.PJSIP_TRANSPORT_TCP6,
}

# RFC 3261 §7.3.3 and later RFCs: compact header names and their long forms.
COMPACT_HEADERS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}


class PhoneError(Exception):
    """A phone command that cannot be carried out (no such call, bad state, pjsua2 error)."""


# --------------------------------------------------------------------------
# Small helpers (no pjsua2 state)
# --------------------------------------------------------------------------

def format_host(host: str) -> str:
    """An IPv6 literal in brackets, as a SIP URI wants it; other hosts unchanged."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def uri_user(value: str) -> str:
    """The user part of a SIP URI or name-addr: '"Bob" <sip:bob@pbx.local>;tag=1' -> 'bob'."""
    match = re.search(r"<([^>]*)>", value)
    uri = match.group(1) if match else value.split(";", 1)[0]
    uri = re.sub(r"^(sips?|tel):", "", uri.strip(), flags=re.IGNORECASE)
    if "@" in uri:
        return uri.split("@", 1)[0].split(";", 1)[0]
    return uri.split(";", 1)[0]


def display_or_user(value: str) -> str:
    """The display name of a From/To value if it has one, else the user part."""
    match = re.match(r'\s*"([^"]+)"\s*<', value) or re.match(r"\s*([^<\"]+?)\s*<", value)
    if match and match.group(1).strip():
        return match.group(1).strip()
    return uri_user(value)


def parse_sip_message(text: str) -> dict[str, Any]:
    """Split one SIP message into its start line, headers and body.

    Returns plain values (picklable): ``method``/``request_uri`` for a request
    or ``status``/``reason`` for a response, ``headers`` as a list of
    ``(name, value)`` pairs in order (compact names expanded, folded lines
    joined), ``cseq``/``cseq_method`` and ``body``.
    """
    text = text.replace("\r\n", "\n")
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    start_line = lines[0].strip() if lines else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip()
        name = COMPACT_HEADERS.get(name.lower(), name)
        headers.append((name, value.strip()))
    result: dict[str, Any] = {
        "start_line": start_line,
        "method": None,
        "request_uri": None,
        "status": None,
        "reason": None,
        "headers": headers,
        "body": body,
        "cseq": None,
        "cseq_method": None,
    }
    if start_line.upper().startswith("SIP/2.0 "):
        parts = start_line.split(" ", 2)
        try:
            result["status"] = int(parts[1])
        except (IndexError, ValueError):
            pass
        result["reason"] = parts[2] if len(parts) > 2 else ""
    else:
        parts = start_line.split(" ")
        if len(parts) >= 2:
            result["method"] = parts[0]
            result["request_uri"] = parts[1]
    for name, value in headers:
        if name.lower() == "cseq":
            number, _, method = value.partition(" ")
            try:
                result["cseq"] = int(number)
            except ValueError:
                pass
            result["cseq_method"] = method.strip() or None
            break
    return result


_LOG_MESSAGE = re.compile(
    r"(?P<direction>RX|TX) (?P<length>\d+) bytes (?:Request|Response) msg \S+ "
    r"\([^)]*\) (?:from|to) (?P<transport>\S+) (?P<peer>\S+?):?\r?\n"
    r"(?P<message>.*?)\r?\n--end msg--",
    re.DOTALL,
)


def parse_log_entry(line: str) -> dict[str, Any] | None:
    """A pjsua message-log entry ("RX 512 bytes Request msg INVITE/cseq=1 (rdata…) from UDP
    127.0.0.1:5060:" + the message + "--end msg--") as ``parse_sip_message`` fields plus
    ``direction`` ("rx"/"tx"), ``transport``, ``peer`` and the whole ``text``; None for
    any other log line."""
    match = _LOG_MESSAGE.search(line)
    if match is None:
        return None
    text = match.group("message")
    fields = parse_sip_message(text)
    fields["direction"] = match.group("direction").lower()
    fields["transport"] = match.group("transport")
    fields["peer"] = match.group("peer")
    fields["text"] = text
    return fields


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


_IPV6_PROBE = """
import os, pjsua2 as pj
ep = pj.Endpoint(); ep.libCreate()
cfg = pj.EpConfig(); cfg.uaConfig.threadCnt = 0; cfg.logConfig.level = 0; cfg.logConfig.consoleLevel = 0
ep.libInit(cfg)
tcfg = pj.TransportConfig(); tcfg.boundAddress = "::1"
tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP6, tcfg)
ep.libStart()
acc_cfg = pj.AccountConfig(); acc_cfg.idUri = "sip:probe@[::1]"; acc_cfg.sipConfig.transportId = tid
acc_cfg.mediaConfig.ipv6Use = pj.PJSUA_IPV6_ENABLED
acc = pj.Account(); acc.create(acc_cfg)
ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
os._exit(0)
"""


@functools.lru_cache(maxsize=None)
def ipv6_supported() -> bool:
    """Whether this pjsua2 build can run an IPv6 phone.

    Some builds (pjsua2-python 2.15 wheels among them) lack PJ_HAS_IPV6: they
    create IPv6 transports but cannot resolve [::1] and abort the process on
    IPv6 account settings, so the probe runs in a child process.
    """
    try:
        probe = subprocess.run([sys.executable, "-c", _IPV6_PROBE], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _add_headers(prm: pj.CallOpParam, headers: dict[str, str] | None) -> None:
    """Put extra headers into the request or response a call operation sends."""
    for name, value in (headers or {}).items():
        header = pj.SipHeader()
        header.hName = name
        header.hValue = value
        prm.txOption.headers.append(header)


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    for header, value in headers:
        if header.lower() == lowered:
            return value
    return None


# --------------------------------------------------------------------------
# pjsua2 glue
# --------------------------------------------------------------------------


# A Python exception escaping a pjsua2 callback (a SWIG director) aborts the
# process; every callback therefore reports its exception as an event instead.


class _LogWriter(pj.LogWriter):
    def __init__(self, sink: Callable[[int, str], None]) -> None:
        super().__init__()
        self._sink = sink

    def write(self, entry: pj.LogEntry) -> None:
        try:
            self._sink(entry.level, entry.msg)
        except Exception:  # noqa: BLE001 (see above; nowhere to report a logging failure)
            pass


class _Account(pj.Account):
    def __init__(self, core: PhoneCore, reg_id: int | None) -> None:
        super().__init__()
        self.core = core
        self.reg_id = reg_id

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.core._guarded("onRegState", self.core._on_reg_state, self, prm)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.core._guarded("onIncomingCall", self.core._on_incoming_call, self, prm)


class _Call(pj.Call):
    def __init__(self, core: PhoneCore, account: _Account, handle: int, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.core = core
        self.handle = handle

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        self.core._guarded("onCallState", self.core._on_call_state, self)


class _CallRecord:
    """What the core remembers of a call, also after its pjsua2 object is gone."""

    __slots__ = ("handle", "obj", "role", "state", "sip_call_id", "remote_uri", "ever_confirmed", "early_seen")

    def __init__(self, handle: int, obj: _Call, role: str) -> None:
        self.handle = handle
        self.obj: _Call | None = obj
        self.role = role
        self.state = "NULL"
        self.sip_call_id = ""
        self.remote_uri = ""
        self.ever_confirmed = False
        self.early_seen = False


class PhoneCore:
    """One SIP phone: a pjsua2 endpoint, its transports, accounts and calls.

    Single-threaded: create it, call `start()`, then call `poll()` in a loop
    (it runs pjsua2's event loop for up to `timeout_ms`). Everything that
    happens is reported through ``on_event(kind, fields)`` with plain,
    picklable fields:

    - ``reg_state``: reg, code, reason, expiration, registered, uri
    - ``incoming_call``: call, from_uri, from_user, from_display, to_uri, to_user,
      request_uri, sip_call_id, headers, text, peer
    - ``call_state``: call, state (NULL/CALLING/INCOMING/EARLY/CONNECTING/
      CONFIRMED/DISCONNECTED), status (last SIP status code), reason, role
      (caller/callee), remote_uri, local_uri, sip_call_id
    - ``sip_rx`` / ``sip_tx``: every SIP message received / sent, from pjsua2's
      message log: method, request_uri, status, reason, headers (list of
      pairs), body, cseq, cseq_method, sip_call_id, call (handle, when the
      Call-ID belongs to a known call), transport, peer, text
    - ``auto_action``: call, action (ringing/answer/reject), code, error
    - ``phone_error``: where, error (a traceback from a pjsua2 callback: a bug here)

    Every event also has ``t`` (time.monotonic() when it happened).
    pjsua2 log lines go to ``on_log(level, text)``.

    ``nat_contact=True`` keeps pjsua's default for TCP: the Contact carries
    the connection's source port, as a phone behind NAT would send it.

    An incoming call is answered with 180 Ringing at once (``auto_ringing``),
    rejected with ``auto_reject`` if set, and answered with 200 after
    ``auto_answer_after`` seconds if set.

    ``host`` binds the phone to another local address than 127.0.0.1 (any of
    127.0.0.0/8 works on Linux: a second "machine" on loopback).

    ``challenge_first=True`` makes the phone play a SIP trunk that wants
    credentials: an incoming INVITE without ``Proxy-Authorization`` (or
    ``Authorization``) is answered with 407 and ``Proxy-Authenticate: Digest
    realm="<challenge_realm>", nonce="…", algorithm=MD5, qop="auth"``
    (reported as an ``auto_action`` with action "challenge"); an INVITE that
    carries credentials is handled as any other call. The phone does not
    check the credentials itself: the test can (``digest_response``).
    """

    def __init__(
        self,
        name: str,
        *,
        port: int = 0,
        transport: str = "udp",
        ipv6: bool = False,
        on_event: Callable[[str, dict[str, Any]], None],
        on_log: Callable[[int, str], None] | None = None,
        auto_ringing: bool = True,
        auto_answer_after: float | None = None,
        auto_reject: int | None = None,
        user_agent: str | None = None,
        nat_contact: bool = False,
        log_level: int = 5,
        host: str | None = None,
        challenge_first: bool = False,
        challenge_realm: str = "trunk",
    ) -> None:
        if transport not in ("udp", "tcp"):
            raise PhoneError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        self.name = name
        self.transport = transport
        self.ipv6 = ipv6
        self.host = host or ("::1" if ipv6 else "127.0.0.1")
        self.port = port
        self.auto_ringing = auto_ringing
        self.auto_answer_after = auto_answer_after
        self.auto_reject = auto_reject
        self.challenge_first = challenge_first
        self.challenge_realm = challenge_realm
        self.user_agent = user_agent or f"sipfork-softphone/{name}"
        self.nat_contact = nat_contact
        self.log_level = log_level
        self._on_event = on_event
        self._on_log = on_log
        self._ep: pj.Endpoint | None = None
        self._writer: _LogWriter | None = None
        self._transports: dict[str, int] = {}
        self._local_account: _Account | None = None
        self._reg_account: _Account | None = None
        self._old_accounts: list[_Account] = []
        self._next_reg_id = 1
        self._registered: dict[int, bool] = {}
        self._domain = "pbx.local"
        self._calls: dict[int, _CallRecord] = {}
        self._by_sip_call_id: dict[str, int] = {}
        self._next_handle = 1
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._pending_logs: list[tuple[float, int, str]] = []
        self._reap: list[_CallRecord] = []
        self._in_flush = False
        self.started = False

    # ---- life cycle -----------------------------------------------------

    def start(self) -> None:
        """Create the endpoint and the phone's transport, and a local account
        (``uri``) that can call and be called without any registrar."""
        if self.ipv6 and not ipv6_supported():
            raise PhoneError(
                "this pjsua2 build has no IPv6 support (built without PJ_HAS_IPV6): "
                "it cannot resolve [::1] and aborts on IPv6 account settings"
            )
        ep = pj.Endpoint()
        with _quiet_stdout():  # libCreate logs at level 5 to stdout before libInit can say otherwise
            ep.libCreate()
        self._ep = ep
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 32
        cfg.uaConfig.userAgent = self.user_agent
        self._writer = _LogWriter(self._log_sink)
        cfg.logConfig.writer = self._writer
        cfg.logConfig.level = self.log_level
        # The writer only sees what reaches the console level; message logs are level 4.
        cfg.logConfig.consoleLevel = max(self.log_level, 4)
        cfg.logConfig.msgLogging = 1
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()
        self._create_first_transport()
        ep.libStart()
        acc_cfg = pj.AccountConfig()
        acc_cfg.idUri = self.uri
        acc_cfg.sipConfig.transportId = self._transports[self.transport]
        self._account_defaults(acc_cfg)
        account = _Account(self, None)
        account.create(acc_cfg, True)
        self._local_account = account
        self.started = True

    def _create_first_transport(self) -> None:
        """Port 0 lets pjsua2 bind any free port (no race with other processes);
        the phone keeps that number for its other transport too."""
        tid = self._ensure_transport(self.transport)
        if not self.port:
            local_name = self._ep.transportGetInfo(tid).localName
            self.port = int(local_name.rsplit(":", 1)[1])

    def _ensure_transport(self, kind: str) -> int:
        if kind not in ("udp", "tcp"):
            raise PhoneError(f"transport must be 'udp' or 'tcp', not {kind!r}")
        if kind in self._transports:
            return self._transports[kind]
        tcfg = pj.TransportConfig()
        tcfg.port = self.port
        tcfg.boundAddress = self.host
        try:
            tid = self._ep.transportCreate(TRANSPORT_TYPES[(kind, self.ipv6)], tcfg)
        except pj.Error as error:
            raise PhoneError(f"cannot create {kind} transport on {format_host(self.host)}:{self.port}: {error.info()}") from None
        self._transports[kind] = tid
        return tid

    def _account_defaults(self, acc_cfg: pj.AccountConfig) -> None:
        # Over TCP pjsua puts the connection's source port into Contact by
        # default (as if behind NAT), reachable only over that connection;
        # unless nat_contact is set, Contact names the phone's listening port.
        acc_cfg.natConfig.contactUseSrcPort = self.nat_contact
        acc_cfg.mediaConfig.transportConfig.boundAddress = self.host
        acc_cfg.mediaConfig.transportConfig.port = 0
        acc_cfg.natConfig.sdpNatRewriteUse = 0
        acc_cfg.natConfig.contactRewriteUse = 0
        acc_cfg.natConfig.viaRewriteUse = 0
        if self.ipv6:
            acc_cfg.mediaConfig.ipv6Use = pj.PJSUA_IPV6_ENABLED

    def shutdown(self, *, unregister: bool = True) -> None:
        """Hang up every call, unregister (unless told not to) and destroy the endpoint.

        The un-REGISTER is awaited here (up to 2 s), so libDestroy() runs
        without network and without its built-in one-second grace sleep.
        Call objects are destroyed before libDestroy(): pjsua2 crashes at exit
        otherwise.
        """
        if self._ep is None:
            return
        ep = self._ep
        self.hangup_all()
        self._poll_until(lambda: all(rec.obj is None or rec.state == "DISCONNECTED" for rec in self._calls.values()), 2.0)
        for rec in self._calls.values():
            rec.obj = None
        self._reap.clear()
        account = self._reg_account
        if unregister and account is not None and self._registered.get(account.reg_id):
            try:
                account.setRegistration(False)
            except pj.Error:
                pass
            else:
                self._poll_until(lambda: not self._registered.get(account.reg_id), 2.0)
        try:
            ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        except pj.Error:
            pass
        self._flush_logs()
        # The accounts are gone with the library; their Python objects may go now.
        self._reg_account = self._local_account = None
        self._old_accounts.clear()
        self._ep = None
        self.started = False

    def _poll_until(self, done: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            self.poll(10)

    # ---- addresses ------------------------------------------------------

    @property
    def uri(self) -> str:
        """The local account's URI, which other phones can call directly."""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.name}@{format_host(self.host)}:{self.port}{suffix}"

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "port": self.port, "transport": self.transport, "ipv6": self.ipv6, "uri": self.uri}

    # ---- registration ---------------------------------------------------

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
    ) -> int:
        """Register ``user@domain`` at the registrar ``server_host:server_port``
        (which is also the outbound proxy for calls). Replaces an earlier
        registration. Returns the registration id that ``reg_state`` events carry;
        the outcome arrives as a ``reg_state`` event."""
        kind = transport or self.transport
        tid = self._ensure_transport(kind)
        suffix = ";transport=tcp" if kind == "tcp" else ""
        server = f"sip:{format_host(server_host.strip('[]'))}:{server_port}{suffix}"
        acc_cfg = pj.AccountConfig()
        acc_cfg.idUri = f"sip:{user}@{domain}"
        acc_cfg.regConfig.registrarUri = server
        acc_cfg.regConfig.timeoutSec = int(expires)
        acc_cfg.regConfig.retryIntervalSec = 0  # report a failure, do not retry behind the test's back
        acc_cfg.regConfig.unregWaitMsec = 2000
        acc_cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        acc_cfg.sipConfig.proxies.append(f"{server};lr")
        acc_cfg.sipConfig.transportId = tid
        self._account_defaults(acc_cfg)
        if self._reg_account is not None:
            old = self._reg_account
            self._reg_account = None
            try:
                old.shutdown()
            except pj.Error:
                pass
            self._old_accounts.append(old)
        reg_id = self._next_reg_id
        self._next_reg_id += 1
        account = _Account(self, reg_id)
        self._reg_account = account
        self._domain = domain
        try:
            account.create(acc_cfg, True)
        except pj.Error as error:
            self._reg_account = None
            raise PhoneError(f"cannot register {acc_cfg.idUri} at {server}: {error.info()}") from None
        return reg_id

    def unregister(self) -> int:
        """Send a REGISTER with expires 0; the result arrives as a ``reg_state`` event."""
        if self._reg_account is None:
            raise PhoneError(f"{self.name} is not registered")
        try:
            self._reg_account.setRegistration(False)
        except pj.Error as error:
            raise PhoneError(f"cannot unregister: {error.info()}") from None
        return self._reg_account.reg_id

    def _on_reg_state(self, account: _Account, prm: pj.OnRegStateParam) -> None:
        if account.reg_id is None:
            return
        try:
            uri = account.getInfo().uri
        except pj.Error:
            uri = ""
        code = int(prm.code)
        self._registered[account.reg_id] = 200 <= code < 300 and int(prm.expiration) > 0
        self._emit(
            "reg_state",
            reg=account.reg_id,
            code=code,
            reason=prm.reason,
            expiration=int(prm.expiration),
            registered=200 <= code < 300 and int(prm.expiration) > 0,
            uri=uri,
        )

    # ---- calls ----------------------------------------------------------

    def call(self, uri: str, *, headers: dict[str, str] | None = None) -> int:
        """Call ``uri`` (a SIP URI, or a user/extension/number at the registered
        domain). Through the registrar when registered, else directly."""
        account = self._reg_account or self._local_account
        if not uri.lower().startswith(("sip:", "sips:", "tel:")):
            if self._reg_account is None:
                raise PhoneError(f"{uri!r} is not a SIP URI and {self.name} is not registered")
            uri = f"sip:{uri}@{self._domain}"
        handle = self._new_handle()
        call = _Call(self, account, handle)
        rec = _CallRecord(handle, call, "caller")
        rec.remote_uri = uri
        self._calls[handle] = rec
        prm = pj.CallOpParam(True)
        _add_headers(prm, headers)
        try:
            call.makeCall(uri, prm)
        except pj.Error as error:
            del self._calls[handle]
            rec.obj = None
            raise PhoneError(f"cannot call {uri}: {error.info()}") from None
        try:
            sip_call_id = call.getInfo().callIdString
        except pj.Error:
            sip_call_id = ""
        if sip_call_id:
            rec.sip_call_id = sip_call_id
            self._by_sip_call_id[sip_call_id] = handle
        return handle

    def answer(self, call: int | None = None, code: int = 200) -> int:
        """Answer an incoming call (with 200, or a provisional code such as 180/183)."""
        rec = self._find(call, incoming=True)
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            rec.obj.answer(prm)
        except pj.Error as error:
            raise PhoneError(f"cannot answer call {rec.handle} with {code}: {error.info()}") from None
        return rec.handle

    def ringing(self, call: int | None = None, code: int = 180) -> int:
        return self.answer(call, code)

    def reject(self, call: int | None = None, code: int = 486, headers: dict[str, str] | None = None) -> int:
        """Reject an incoming call that is not answered yet (486 Busy Here by
        default), with ``headers`` added to the response (a 407's
        ``Proxy-Authenticate``, a 302's ``Contact`` …)."""
        rec = self._find(call, incoming=True)
        prm = pj.CallOpParam()
        prm.statusCode = code
        _add_headers(prm, headers)
        try:
            rec.obj.hangup(prm)
        except pj.Error as error:
            raise PhoneError(f"cannot reject call {rec.handle} with {code}: {error.info()}") from None
        return rec.handle

    def hangup(self, call: int | None = None) -> int:
        """End a call: CANCEL while it rings, BYE when answered, 603 for an unanswered incoming one."""
        rec = self._find(call, incoming=False)
        try:
            rec.obj.hangup(pj.CallOpParam())
        except pj.Error as error:
            raise PhoneError(f"cannot hang up call {rec.handle}: {error.info()}") from None
        return rec.handle

    def hangup_all(self) -> list[int]:
        handles = []
        for rec in list(self._calls.values()):
            if rec.obj is not None and rec.state != "DISCONNECTED":
                try:
                    rec.obj.hangup(pj.CallOpParam())
                    handles.append(rec.handle)
                except pj.Error:
                    pass
        return handles

    def configure(self, **options: Any) -> None:
        """Change ``auto_ringing``, ``auto_answer_after``, ``auto_reject`` or ``challenge_first``."""
        for key, value in options.items():
            if key not in ("auto_ringing", "auto_answer_after", "auto_reject", "challenge_first"):
                raise PhoneError(f"unknown phone option {key!r}")
            setattr(self, key, value)

    def calls(self) -> dict[int, str]:
        """Every call this phone has seen, handle -> state."""
        return {handle: rec.state for handle, rec in self._calls.items()}

    def _new_handle(self) -> int:
        handle = self._next_handle
        self._next_handle += 1
        return handle

    def _find(self, handle: int | None, *, incoming: bool) -> _CallRecord:
        if handle is not None:
            rec = self._calls.get(handle)
            if rec is None:
                raise PhoneError(f"{self.name} has no call {handle}")
            if rec.obj is None or rec.state == "DISCONNECTED":
                raise PhoneError(f"call {handle} of {self.name} is already disconnected")
            return rec
        live = [
            rec
            for rec in self._calls.values()
            if rec.obj is not None
            and rec.state != "DISCONNECTED"
            and (not incoming or (rec.role == "callee" and rec.state in ("INCOMING", "EARLY")))
        ]
        if not live:
            what = "ringing incoming call" if incoming else "call"
            raise PhoneError(f"{self.name} has no {what} (calls: {self.calls()})")
        return live[-1]

    def _on_incoming_call(self, account: _Account, prm: pj.OnIncomingCallParam) -> None:
        handle = self._new_handle()
        call = _Call(self, account, handle, prm.callId)
        rec = _CallRecord(handle, call, "callee")
        self._calls[handle] = rec
        try:
            info = call.getInfo()
            rec.state = STATE_NAMES.get(info.state, "INCOMING")
            rec.sip_call_id = info.callIdString
            rec.remote_uri = info.remoteUri
            local_uri = info.localUri
        except pj.Error:
            local_uri = ""
        if rec.sip_call_id:
            self._by_sip_call_id[rec.sip_call_id] = handle
        message = parse_sip_message(prm.rdata.wholeMsg)
        headers = message["headers"]
        from_value = header_value(headers, "From") or rec.remote_uri
        to_value = header_value(headers, "To") or local_uri
        self._emit(
            "incoming_call",
            call=handle,
            from_uri=rec.remote_uri or from_value,
            from_user=uri_user(from_value),
            from_display=display_or_user(from_value),
            to_uri=to_value,
            to_user=uri_user(to_value),
            request_uri=message["request_uri"],
            sip_call_id=rec.sip_call_id,
            headers=headers,
            text=prm.rdata.wholeMsg,
            peer=prm.rdata.srcAddress,
        )
        if self.challenge_first and not any(
            name.lower() in ("proxy-authorization", "authorization") for name, _ in headers
        ):
            # Not from inside the callback: pjsua defers a hangup made there
            # until the call is set up and drops the extra headers on the way.
            self.after(0, lambda: self._challenge(rec))
            return
        if self.auto_reject is not None:
            self._auto(rec, "reject", int(self.auto_reject))
            return
        if self.auto_ringing:
            self._auto(rec, "ringing", 180)
        if self.auto_answer_after is not None:
            self.after(float(self.auto_answer_after), lambda: self._auto(rec, "answer", 200))

    def _challenge(self, rec: _CallRecord) -> None:
        """407 with a digest challenge, as a SIP trunk answers an INVITE without credentials."""
        if rec.obj is None or rec.state == "DISCONNECTED":
            return
        nonce = os.urandom(12).hex()
        challenge = f'Digest realm="{self.challenge_realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'
        prm = pj.CallOpParam()
        prm.statusCode = 407
        _add_headers(prm, {"Proxy-Authenticate": challenge})
        try:
            rec.obj.hangup(prm)
        except pj.Error as error:
            self._emit("auto_action", call=rec.handle, action="challenge", code=407, error=error.info())
            return
        self._emit("auto_action", call=rec.handle, action="challenge", code=407, error=None)

    def _auto(self, rec: _CallRecord, action: str, code: int) -> None:
        if rec.obj is None or rec.state in ("DISCONNECTED", "CONFIRMED", "CONNECTING"):
            return
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            if action == "reject":
                rec.obj.hangup(prm)
            else:
                rec.obj.answer(prm)
        except pj.Error as error:
            self._emit("auto_action", call=rec.handle, action=action, code=code, error=error.info())
            return
        self._emit("auto_action", call=rec.handle, action=action, code=code, error=None)

    def _on_call_state(self, call: _Call) -> None:
        rec = self._calls.get(call.handle)
        if rec is None:
            return
        try:
            info = call.getInfo()
        except pj.Error:
            return
        state = STATE_NAMES.get(info.state, str(info.state))
        rec.state = state
        if info.callIdString and not rec.sip_call_id:
            rec.sip_call_id = info.callIdString
            self._by_sip_call_id[info.callIdString] = rec.handle
        if state == "CONFIRMED":
            rec.ever_confirmed = True
        self._emit(
            "call_state",
            call=rec.handle,
            state=state,
            status=int(info.lastStatusCode),
            reason=info.lastReason,
            role=rec.role,
            remote_uri=info.remoteUri,
            local_uri=info.localUri,
            sip_call_id=info.callIdString,
        )
        if state == "DISCONNECTED":
            # Deleting the pjsua2 object inside its own callback is not safe
            # from Python; drop it as soon as poll() returns.
            self._reap.append(rec)

    # ---- event loop -----------------------------------------------------

    def after(self, seconds: float, action: Callable[[], None]) -> None:
        """Run ``action`` from poll() once ``seconds`` have passed."""
        self._timer_seq += 1
        self._timers.append((time.monotonic() + seconds, self._timer_seq, action))
        self._timers.sort()

    def poll(self, timeout_ms: int = 10) -> None:
        """Run pjsua2's event loop for up to ``timeout_ms`` and then due timers."""
        if self._ep is None:
            return
        self._ep.libHandleEvents(timeout_ms)
        self._flush_logs()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, action = self._timers.pop(0)
            action()
        while self._reap:
            rec = self._reap.pop()
            rec.obj = None

    def _log_sink(self, level: int, text: str) -> None:
        self._pending_logs.append((time.monotonic(), level, text))

    def _flush_logs(self) -> None:
        if self._in_flush:
            return
        self._in_flush = True
        try:
            while self._pending_logs:
                t, level, text = self._pending_logs.pop(0)
                if self._on_log is not None:
                    self._on_log(level, text)
                fields = parse_log_entry(text)
                if fields is None:
                    continue
                direction = fields.pop("direction")
                fields["sip_call_id"] = header_value(fields["headers"], "Call-ID")
                fields["call"] = self._by_sip_call_id.get(fields["sip_call_id"] or "")
                fields["t"] = t
                self._on_event("sip_rx" if direction == "rx" else "sip_tx", fields)
        finally:
            self._in_flush = False

    def _guarded(self, where: str, handler: Callable[..., None], *args: Any) -> None:
        try:
            handler(*args)
        except Exception:  # noqa: BLE001 (reported as an event, see _LogWriter)
            import traceback

            text = traceback.format_exc()
            if self._on_log is not None:
                self._on_log(1, f"error in {where}:\n{text}")
            try:
                self._emit("phone_error", where=where, error=text)
            except Exception:  # noqa: BLE001
                pass

    def _emit(self, kind: str, **fields: Any) -> None:
        self._flush_logs()  # keep the order: the SIP message first, then what it caused
        fields.setdefault("t", time.monotonic())
        self._on_event(kind, fields)


# --------------------------------------------------------------------------
# The command-line softphone
# --------------------------------------------------------------------------


def _parse_server(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\](?::(\d+))?|([^:]+)(?::(\d+))?", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not host:port: {text!r}")
    host = match.group(1) or match.group(3)
    port = match.group(2) or match.group(4) or "5060"
    return host, int(port)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="A SIP softphone (pjsua2, no audio) that registers at sipfork, calls and answers.",
    )
    parser.add_argument("--user", help="SIP user name (registers as USER@DOMAIN)")
    parser.add_argument("--password", help="digest password")
    parser.add_argument("--server", type=_parse_server, help="registrar and outbound proxy, HOST:PORT ([::1]:5060 for IPv6)")
    parser.add_argument("--domain", default="pbx.local", help="the PBX domain (default: pbx.local)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--port", type=int, default=0, help="local SIP port (default: any free port)")
    parser.add_argument("--expires", type=int, default=300, help="registration lifetime in seconds")
    parser.add_argument("--call", metavar="TARGET", help="call this extension, user, number or SIP URI after registering; exit when the call ends")
    parser.add_argument("--answer-after", type=float, metavar="SECONDS", help="answer incoming calls after this many seconds")
    parser.add_argument("--reject", type=int, metavar="CODE", help="reject incoming calls with this status (e.g. 486)")
    parser.add_argument("--hangup-after", type=float, metavar="SECONDS", help="hang up this many seconds after a call is answered")
    parser.add_argument("--verbose", action="store_true", help="print pjsua2's log, SIP messages included, to stderr")
    parser.add_argument("--check-ipv6", action="store_true", help="only say whether this pjsua2 build can use IPv6 (exit status 0 if so)")
    return parser


class _Console:
    """Turns phone events into the softphone's plain output lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.core: PhoneCore | None = None
        self.stop = False
        self.exit_code = 0
        self.registered_once = False
        self.outgoing: int | None = None
        self.ringing_printed: set[int] = set()

    def say(self, line: str) -> None:
        print(line, flush=True)

    def on_log(self, level: int, text: str) -> None:
        if self.args.verbose:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()

    def on_event(self, kind: str, ev: dict[str, Any]) -> None:
        core = self.core
        if kind == "reg_state":
            if ev["registered"]:
                self.say(f"registered as {uri_user(ev['uri'])}@{self.args.domain} ({ev['code']})")
                if not self.registered_once:
                    self.registered_once = True
                    if self.args.call:
                        core.after(0, self.place_call)
            elif 200 <= ev["code"] < 300:
                self.say(f"unregistered ({ev['code']})")
            else:
                self.say(f"registration failed: {ev['code']} {ev['reason']}")
                if not self.registered_once:
                    self.exit_code = 1
                    self.stop = True
        elif kind == "incoming_call":
            self.say(f"incoming call from {ev['from_display']}")
        elif kind == "auto_action":
            if ev["error"]:
                self.say(f"could not {ev['action']} call: {ev['error']}")
            elif ev["action"] == "reject":
                self.say(f"rejected with {ev['code']}")
            elif ev["action"] == "answer":
                self.say("answering")
        elif kind == "sip_rx" and ev["method"] == "CANCEL":
            reason = header_value(ev["headers"], "Reason")
            self.say(f"call cancelled: {reason}" if reason else "call cancelled (no reason given)")
        elif kind == "call_state":
            state, handle = ev["state"], ev["call"]
            if state == "CALLING":
                self.say(f"calling {ev['remote_uri']}")
            elif state == "EARLY" and handle not in self.ringing_printed:
                self.ringing_printed.add(handle)
                self.say("ringing")
            elif state == "CONFIRMED":
                self.say("connected")
                if self.args.hangup_after is not None:
                    core.after(self.args.hangup_after, lambda: self.hang_up(handle))
            elif state == "DISCONNECTED":
                self.say(f"disconnected ({ev['status']})")
                if handle == self.outgoing:
                    self.exit_code = 0 if core._calls[handle].ever_confirmed else 1
                    self.stop = True

    def place_call(self) -> None:
        try:
            self.outgoing = self.core.call(self.args.call)
        except PhoneError as error:
            self.say(f"call failed: {error}")
            self.exit_code = 1
            self.stop = True

    def hang_up(self, handle: int) -> None:
        try:
            self.core.hangup(handle)
        except PhoneError:
            pass  # already ended


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.check_ipv6:
        supported = ipv6_supported()
        print("IPv6: supported" if supported else "IPv6: not supported by this pjsua2 build")
        return 0 if supported else 1
    missing = [f"--{name}" for name in ("user", "password", "server") if getattr(args, name) is None]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    host, port = args.server
    console = _Console(args)

    def request_stop(signum: int, frame: object) -> None:
        console.stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    core = PhoneCore(
        args.user,
        port=args.port,
        transport=args.transport,
        ipv6=":" in host,
        on_event=console.on_event,
        on_log=console.on_log,
        auto_answer_after=args.answer_after,
        auto_reject=args.reject,
    )
    console.core = core
    try:
        core.start()
        core.register(host, port, args.user, args.password, domain=args.domain, expires=args.expires)
        while not console.stop:
            core.poll(20)
    except PhoneError as error:
        print(f"error: {error}", file=sys.stderr)
        console.exit_code = 1
    finally:
        core.shutdown()
    return console.exit_code


if __name__ == "__main__":
    sys.exit(main())
