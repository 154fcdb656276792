"""The registrar (RFC 3261 §10.3), driven by hand with a fake clock.

REGISTER requests are built as bytes and parsed with the real parser; the
phone answers challenges with ``sipfork.sip.digest``.
"""

from __future__ import annotations

import logging
import random
import zlib

import pytest

from sipfork.bindings import Binding
from sipfork.config import Config, parse_config
from sipfork.core.auth import Authenticator
from sipfork.core.effects import DropBinding, Log, SaveBinding
from sipfork.core.ids import Ids
from sipfork.core.location import Location
from sipfork.core.registrar import Registrar, RegistrarResult
from sipfork.sip.errors import LocalProtocolError
from sipfork.sip.digest import Credentials, digest_response, format_credentials, parse_challenge
from sipfork.sip.message import Request, Response, parse_message

T0 = 1_700_000_000.0
SECRET = b"k" * 32

CONFIG_TEXT = """
[proxy]
domain = "pbx.local"
listen = ["udp:127.0.0.1:5060"]
data_dir = "/tmp/sipfork-test-unused"
{proxy_extra}

[[user]]
name = "alice"
password = "alice-secret"

[[user]]
name = "bob"
password = "bob-secret"
digest_algorithms = ["MD5"]

[[user]]
name = "carol"
password = "carol-secret"
"""


def make_config(proxy_extra: str = "") -> Config:
    return parse_config(CONFIG_TEXT.format(proxy_extra=proxy_extra))


def make_registrar(config: Config | None = None, *, seed: int = 1, **options):
    config = config or make_config()
    location = Location()
    authenticator = Authenticator(config, secret=SECRET)
    ids = Ids(random.Random(seed).randbytes)
    return Registrar(config, location, authenticator, ids, **options), location, authenticator


def request_bytes(
    *,
    method: str = "REGISTER",
    request_uri: str = "sip:pbx.local",
    user: str = "alice",
    to_host: str = "pbx.local",
    via: str = "192.0.2.10:5062",
    via_transport: str = "UDP",
    rport: bool = True,
    call_id: str = "reg-1@192.0.2.10",
    cseq: int = 1,
    contacts: tuple[str, ...] = ("<sip:alice@192.0.2.10:5062>",),
    expires: int | str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    lines = [
        f"{method} {request_uri} SIP/2.0",
        f"Via: SIP/2.0/{via_transport} {via};branch=z9hG4bK-{cseq}-{zlib.crc32(call_id.encode()):08x}"
        + (";rport" if rport else ""),
        "Max-Forwards: 70",
        f"From: <sip:{user}@{to_host}>;tag=from{cseq}",
        f"To: <sip:{user}@{to_host}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "User-Agent: TestPhone/1.0",
    ]
    lines.extend(f"Contact: {contact}" for contact in contacts)
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def parse_response(result: RegistrarResult) -> Response:
    message = parse_message(result.response)
    assert isinstance(message, Response)
    assert message.status == result.status
    return message


def authorization(
    challenge_value: str,
    *,
    username: str,
    password: str,
    method: str = "REGISTER",
    uri: str = "sip:pbx.local",
    nc: int = 1,
    cnonce: str = "0a4f113b",
    realm: str | None = None,
) -> str:
    """The Authorization value a phone sends in answer to one challenge header."""
    challenge = parse_challenge(challenge_value)
    realm = realm or challenge.realm
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        cnonce=cnonce,
        nc=nc_text,
        qop="auth",
    )
    return format_credentials(
        Credentials(
            username=username,
            realm=realm,
            nonce=challenge.nonce,
            uri=uri,
            response=response,
            algorithm=challenge.algorithm,
            cnonce=cnonce,
            nc=nc_text,
            qop="auth",
            opaque=challenge.opaque,
        )
    )


class Phone:
    """A user agent that registers: answers 401s with the algorithm it likes."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        user: str = "alice",
        password: str | None = None,
        source: tuple[str, int] = ("192.0.2.10", 5062),
        transport: str = "udp",
        call_id: str | None = None,
        algorithm: str = "SHA-256",
        contacts: tuple[str, ...] | None = None,
    ) -> None:
        self.registrar = registrar
        self.user = user
        self.password = password if password is not None else f"{user}-secret"
        self.source = source
        self.transport = transport
        self.call_id = call_id or f"reg-{user}@{source[0]}"
        self.algorithm = algorithm
        self.contacts = contacts or (f"<sip:{user}@{source[0]}:{source[1]}>",)
        self.cseq = 0
        self.nc = 0
        self.challenge: str | None = None

    def send(
        self,
        now: float,
        *,
        contacts: tuple[str, ...] | None = None,
        authorize: bool = True,
        source: tuple[str, int] | None = None,
        **fields,
    ) -> RegistrarResult:
        self.cseq += 1
        headers = tuple(fields.pop("headers", ()))
        if authorize and self.challenge is not None:
            self.nc += 1
            headers += (
                (
                    "Authorization",
                    authorization(self.challenge, username=self.user, password=self.password, nc=self.nc),
                ),
            )
        data = request_bytes(
            user=fields.pop("to_user", self.user),
            via=(f"[{self.source[0]}]" if ":" in self.source[0] else self.source[0]) + f":{self.source[1]}",
            call_id=self.call_id,
            cseq=self.cseq,
            contacts=self.contacts if contacts is None else contacts,
            headers=headers,
            **fields,
        )
        return self.registrar.handle(
            parse_request(data), source=source or self.source, transport=self.transport, now=now
        )

    def take_challenge(self, result: RegistrarResult) -> None:
        response = parse_response(result)
        for value in response.header_lines("WWW-Authenticate"):
            if parse_challenge(value).algorithm == self.algorithm:
                self.challenge = value
                self.nc = 0
                return
        raise AssertionError(f"no {self.algorithm} challenge in {result.response!r}")

    def register(self, now: float, **fields) -> RegistrarResult:
        """Send; on a 401 take the challenge and send again."""
        result = self.send(now, **fields)
        if result.status == 401:
            self.take_challenge(result)
            result = self.send(now, **fields)
        return result


# ---------------------------------------------------------------- helpers for checks


def contact_lines(result: RegistrarResult) -> list[str]:
    return parse_response(result).header_lines("Contact")


def saved(result: RegistrarResult) -> list[Binding]:
    return [e.binding for e in result.effects if isinstance(e, SaveBinding)]


def dropped(result: RegistrarResult) -> list[tuple[str, str]]:
    return [(e.user, e.contact) for e in result.effects if isinstance(e, DropBinding)]


def store_effects(result: RegistrarResult) -> list[SaveBinding | DropBinding]:
    return [e for e in result.effects if isinstance(e, (SaveBinding, DropBinding))]


@pytest.fixture
def setup():
    return make_registrar()


# ---------------------------------------------------------------- the challenge round


def test_first_register_is_challenged_with_both_algorithms(setup):
    registrar, location, _ = setup
    result = Phone(registrar).send(T0)
    assert result.status == 401
    response = parse_response(result)
    challenges = [parse_challenge(v) for v in response.header_lines("WWW-Authenticate")]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]  # [proxy] order
    assert {c.realm for c in challenges} == {"pbx.local"}
    assert all(c.qop == "auth" and not c.stale for c in challenges)
    assert challenges[0].nonce == challenges[1].nonce
    assert response.to_tag  # a UAS adds a To tag (RFC 3261 §8.2.6.2)
    assert store_effects(result) == []
    assert location.all() == []


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_with_credentials(setup, algorithm):
    registrar, location, _ = setup
    phone = Phone(registrar, algorithm=algorithm, source=("203.0.113.5", 40123))
    phone.take_challenge(phone.send(T0))
    result = phone.send(T0 + 1, contacts=("<sip:alice@10.0.0.5:5062;transport=udp>",))
    assert result.status == 200
    binding = Binding(
        user="alice",
        contact="sip:alice@10.0.0.5:5062;transport=udp",
        source_host="203.0.113.5",
        source_port=40123,
        transport="udp",
        expires_at=T0 + 1 + 3600,
        q=1.0,
        call_id=phone.call_id,
        cseq=2,
        user_agent="TestPhone/1.0",
        registered_at=T0 + 1,
    )
    assert location.all() == [binding]
    assert result.effects[0] == SaveBinding(binding=binding)
    assert isinstance(result.effects[-1], Log)
    response = parse_response(result)
    assert response.header_lines("Contact") == ["<sip:alice@10.0.0.5:5062;transport=udp>;expires=3600"]
    assert response.header("Date") == "Tue, 14 Nov 2023 22:13:21 GMT"
    top = response.top_via
    assert top.received == "203.0.113.5" and top.rport == 40123  # RFC 3581
    assert response.to_tag


def test_date_follows_the_clock_to_the_second(setup):
    """The Date text is kept for the second it names, and only for it."""
    registrar, _, _ = setup
    phone = Phone(registrar)
    dates = []
    for now in (T0 + 1.2, T0 + 1.9, T0 + 2.0, T0 + 1.5, T0 + 86400.7):
        result = phone.register(now)
        assert result.status == 200
        dates.append(parse_response(result).header("Date"))
    assert dates == [
        "Tue, 14 Nov 2023 22:13:21 GMT",
        "Tue, 14 Nov 2023 22:13:21 GMT",
        "Tue, 14 Nov 2023 22:13:22 GMT",
        "Tue, 14 Nov 2023 22:13:21 GMT",  # a clock stepped back is followed too
        "Wed, 15 Nov 2023 22:13:20 GMT",
    ]


def test_per_user_algorithms(setup):
    registrar, _, _ = setup
    result = Phone(registrar, user="bob", algorithm="MD5").send(T0)
    values = parse_response(result).header_lines("WWW-Authenticate")
    assert [parse_challenge(v).algorithm for v in values] == ["MD5"]
    assert Phone(registrar, user="bob", algorithm="MD5").register(T0).status == 200


def test_proxy_algorithm_order_is_kept():
    registrar, _, _ = make_registrar(make_config('digest_algorithms = ["MD5", "SHA-256"]'))
    values = parse_response(Phone(registrar).send(T0)).header_lines("WWW-Authenticate")
    assert [parse_challenge(v).algorithm for v in values] == ["MD5", "SHA-256"]


def test_algorithm_not_offered_to_the_user_is_refused(setup):
    registrar, location, _ = setup
    alice = Phone(registrar)
    alice.take_challenge(alice.send(T0))
    bob = Phone(registrar, user="bob", algorithm="MD5")
    # bob's phone answers alice's SHA-256 challenge: bob only has MD5
    bob.challenge = alice.challenge
    assert bob.send(T0).status == 403
    assert location.all() == []


def test_stale_nonce_gets_stale_challenge_then_succeeds(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    result = phone.send(T0 + 301)  # the nonce lives 300 s
    assert result.status == 401
    challenges = [parse_challenge(v) for v in parse_response(result).header_lines("WWW-Authenticate")]
    assert all(c.stale for c in challenges)
    assert location.all() == [] and store_effects(result) == []
    phone.take_challenge(result)
    assert phone.send(T0 + 302).status == 200
    assert len(location.all()) == 1


def test_nonce_from_another_address_is_refused(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    result = phone.send(T0 + 1, source=("198.51.100.7", 5062))
    assert result.status == 401
    assert all(
        parse_challenge(v).stale for v in parse_response(result).header_lines("WWW-Authenticate")
    )
    assert location.all() == []


def test_replayed_nonce_count_is_refused(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    assert phone.send(T0 + 1).status == 200  # nc=1
    phone.nc = 0  # the same nonce and nc again (a replayed Authorization)
    result = phone.send(T0 + 2, contacts=("<sip:evil@198.51.100.66>",))
    assert result.status == 401
    assert [b.contact for b in location.all()] == ["sip:alice@192.0.2.10:5062"]
    phone.nc = 1  # a well-behaved phone counts on
    assert phone.send(T0 + 3).status == 200


def test_wrong_password_is_forbidden_and_binds_nothing(setup):
    registrar, location, _ = setup
    phone = Phone(registrar, password="guess")
    result = phone.register(T0)
    assert result.status == 403
    assert location.all() == []
    assert store_effects(result) == []
    assert [e.level for e in result.effects] == [logging.WARNING]


def test_credentials_of_another_user_are_forbidden(setup):
    registrar, location, _ = setup
    carol = Phone(registrar, user="carol")
    carol.take_challenge(carol.send(T0))
    # carol authenticates correctly but registers for alice
    result = carol.send(T0, to_user="alice", contacts=("<sip:carol@192.0.2.10:5062>",))
    assert result.status == 403
    assert location.all() == []


def test_credentials_of_an_unknown_user_are_forbidden(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    phone.user = "mallory"
    assert phone.send(T0, to_user="alice").status == 403
    assert location.all() == []


def test_credentials_for_another_realm_are_ignored(setup):
    registrar, _, _ = setup
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    value = authorization(phone.challenge, username="alice", password="alice-secret", realm="elsewhere")
    result = phone.send(T0, authorize=False, headers=(("Authorization", value),))
    assert result.status == 401


def test_malformed_authorization_is_a_bad_request(setup):
    registrar, _, _ = setup
    result = Phone(registrar).send(T0, headers=(("Authorization", 'Digest username="alice", realm='),))
    assert result.status == 400


def test_unknown_user_is_not_found(setup):
    registrar, _, _ = setup
    result = Phone(registrar, user="mallory").send(T0)
    assert result.status == 404
    assert store_effects(result) == []


def test_any_host_in_to_is_accepted(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    assert phone.register(T0, to_host="127.0.0.1").status == 200
    assert len(location.all()) == 1


# ---------------------------------------------------------------- bindings


def test_several_contacts_q_order_and_listing(setup):
    registrar, location, _ = setup
    desk = Phone(registrar, source=("192.0.2.10", 5062), call_id="desk")
    soft = Phone(registrar, source=("192.0.2.20", 5070), call_id="soft", transport="tcp")
    assert desk.register(T0, contacts=("<sip:alice@192.0.2.10:5062>;q=0.5",)).status == 200
    result = soft.register(
        T0 + 10, contacts=("<sip:alice@192.0.2.20:5070;transport=tcp>;q=0.9", "<sip:alice@192.0.2.21>")
    )
    assert result.status == 200
    assert contact_lines(result) == [
        "<sip:alice@192.0.2.21>;expires=3600",
        "<sip:alice@192.0.2.20:5070;transport=tcp>;expires=3600;q=0.9",
        "<sip:alice@192.0.2.10:5062>;expires=3590;q=0.5",
    ]
    assert [b.q for b in location.contacts("alice", T0 + 10)] == [1.0, 0.9, 0.5]
    tcp = location.lookup("alice", "sip:alice@192.0.2.20:5070;transport=tcp")
    assert tcp is not None and tcp.transport == "tcp" and tcp.source_port == 5070
    assert [b.contact for b in saved(result)] == [
        "sip:alice@192.0.2.20:5070;transport=tcp",
        "sip:alice@192.0.2.21",
    ]


def test_expires_header_and_contact_parameter(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    result = phone.register(
        T0,
        contacts=("<sip:alice@192.0.2.10:5062>;expires=120", "<sip:alice@192.0.2.11>"),
        expires=600,
    )
    assert contact_lines(result) == [
        "<sip:alice@192.0.2.10:5062>;expires=120",  # the parameter wins
        "<sip:alice@192.0.2.11>;expires=600",
    ]
    assert location.next_expiry() == T0 + 120
    assert location.expire(T0 + 120) == [DropBinding(user="alice", contact="sip:alice@192.0.2.10:5062")]
    query = phone.send(T0 + 130, contacts=())
    assert contact_lines(query) == ["<sip:alice@192.0.2.11>;expires=470"]


def test_long_expiry_is_shortened_to_the_maximum(setup):
    registrar, location, _ = setup
    result = Phone(registrar).register(T0, expires=86400)
    assert contact_lines(result) == ["<sip:alice@192.0.2.10:5062>;expires=3600"]
    assert location.all()[0].expires_at == T0 + 3600


def test_malformed_expires_counts_as_an_hour(setup):
    registrar, _, _ = setup
    result = Phone(registrar).register(T0, expires="soon")
    assert contact_lines(result) == ["<sip:alice@192.0.2.10:5062>;expires=3600"]


def test_interval_too_brief(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    result = phone.register(T0, contacts=("<sip:alice@192.0.2.10:5062>", "<sip:alice@h>;expires=30"))
    assert result.status == 423
    assert parse_response(result).header("Min-Expires") == "60"
    assert location.all() == [] and store_effects(result) == []
    assert phone.send(T0, expires=60).status == 200


def test_expires_zero_removes_one_contact(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@192.0.2.10:5062>", "<sip:alice@192.0.2.11>"))
    result = phone.send(T0 + 5, contacts=("<sip:alice@192.0.2.11>;expires=0",))
    assert result.status == 200
    assert dropped(result) == [("alice", "sip:alice@192.0.2.11")]
    assert contact_lines(result) == ["<sip:alice@192.0.2.10:5062>;expires=3595"]
    # removing what is not there changes nothing
    result = phone.send(T0 + 6, contacts=("<sip:alice@192.0.2.99>",), expires=0)
    assert store_effects(result) == []


def test_contact_star_removes_everything(setup):
    registrar, location, _ = setup
    desk = Phone(registrar, call_id="desk")
    soft = Phone(registrar, call_id="soft", source=("192.0.2.20", 5070))
    desk.register(T0)
    soft.register(T0)
    Phone(registrar, user="carol").register(T0)
    result = desk.send(T0 + 1, contacts=("*",), expires=0)
    assert result.status == 200
    assert dropped(result) == [("alice", "sip:alice@192.0.2.10:5062"), ("alice", "sip:alice@192.0.2.20:5070")]
    assert contact_lines(result) == []
    assert [b.user for b in location.all()] == ["carol"]


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(("*",), None), (("*",), 10), (("*", "<sip:alice@h>"), 0)],
)
def test_contact_star_misuse_is_a_bad_request(setup, contacts, expires):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0)
    result = phone.send(T0 + 1, contacts=contacts, expires=expires)
    assert result.status == 400
    assert len(location.all()) == 1 and store_effects(result) == []


def test_contact_star_respects_cseq_order(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0)  # CSeq 2 stored
    phone.cseq = 0  # next request carries CSeq 1, same Call-ID
    result = phone.send(T0 + 1, contacts=("*",), expires=0)
    assert result.status == 500
    assert len(location.all()) == 1


def test_refresh_replaces_the_binding(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0)
    result = phone.register(T0 + 1800)  # the old nonce is stale by now: one more round
    assert result.status == 200
    assert len(location.all()) == 1
    binding = location.all()[0]
    assert binding.expires_at == T0 + 1800 + 3600 and binding.cseq == 4
    assert binding.registered_at == T0 + 1800
    assert saved(result) == [binding]


def test_refresh_shares_the_strings_of_the_binding_it_replaces(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0)
    (first,) = location.all()
    phone.register(T0 + 60)
    (refreshed,) = location.all()
    assert refreshed is not first and refreshed.cseq > first.cseq
    # One copy of each string in memory, not one per refresh.
    assert refreshed.contact is first.contact and refreshed.call_id is first.call_id
    assert refreshed.user_agent is first.user_agent and refreshed.source_host is first.source_host


def test_refresh_from_a_new_address_moves_the_binding(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0)
    phone.source = ("192.0.2.99", 6000)  # the NAT mapping changed
    phone.take_challenge(phone.send(T0 + 10, authorize=False))  # the nonce is bound to the old address
    assert phone.send(T0 + 10).status == 200
    (binding,) = location.all()
    assert (binding.source_host, binding.source_port) == ("192.0.2.99", 6000)


def test_out_of_order_cseq_fails_and_changes_nothing(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0)  # CSeq 2
    before = location.all()
    phone.cseq = 1  # the next request carries CSeq 2 again
    result = phone.send(T0 + 1, expires=600)
    assert result.status == 500
    assert location.all() == before
    assert store_effects(result) == []


def test_another_call_id_may_carry_a_lower_cseq(setup):
    registrar, location, _ = setup
    first = Phone(registrar, call_id="first")
    first.register(T0)
    first.cseq = 40
    first.register(T0 + 1)
    second = Phone(registrar, call_id="rebooted")  # CSeq starts again at 1
    assert second.register(T0 + 2).status == 200
    (binding,) = location.all()
    assert binding.call_id == "rebooted" and binding.cseq == 2


def test_equivalent_contact_written_differently_replaces(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@Phone.Example:5062;line=1>",))
    result = phone.send(T0 + 1, contacts=("<sip:alice@phone.example:5062;line=1>",))
    assert result.status == 200
    assert dropped(result) == [("alice", "sip:alice@Phone.Example:5062;line=1")]
    assert [b.contact for b in location.all()] == ["sip:alice@phone.example:5062;line=1"]


def test_register_without_contact_lists_the_bindings(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@192.0.2.10:5062>;q=0.2", "<sip:alice@192.0.2.11>"))
    result = phone.send(T0 + 100, contacts=())
    assert result.status == 200
    assert store_effects(result) == []
    assert contact_lines(result) == [
        "<sip:alice@192.0.2.11>;expires=3500",
        "<sip:alice@192.0.2.10:5062>;expires=3500;q=0.2",
    ]


def test_query_still_needs_credentials(setup):
    registrar, _, _ = setup
    assert Phone(registrar).send(T0, contacts=()).status == 401


def test_contacts_as_written_are_echoed(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    written = '"Alice Desk" <sip:alice@192.0.2.10:5062;ob>;+sip.instance="<urn:uuid:1>";expires=300'
    result = phone.register(T0, contacts=(written,))
    assert result.status == 200
    assert location.all()[0].contact == "sip:alice@192.0.2.10:5062;ob"
    assert contact_lines(result) == ["<sip:alice@192.0.2.10:5062;ob>;expires=300"]


def test_addr_spec_contact(setup):
    registrar, location, _ = setup
    result = Phone(registrar).register(T0, contacts=("sip:alice@192.0.2.10:5062;expires=200",))
    assert result.status == 200
    assert contact_lines(result) == ["<sip:alice@192.0.2.10:5062>;expires=200"]


@pytest.mark.parametrize("q", ["1.5", "-1", "0.1234", "x", "1.01"])
def test_bad_q_value(setup, q):
    registrar, location, _ = setup
    result = Phone(registrar).register(T0, contacts=(f"<sip:alice@h>;q={q}",))
    assert result.status == 400
    assert location.all() == []


def test_non_sip_contact_is_refused(setup):
    registrar, location, _ = setup
    result = Phone(registrar).register(T0, contacts=("<tel:+4922166966966>",))
    assert result.status == 416
    assert location.all() == []


def test_require_gets_bad_extension(setup):
    registrar, location, _ = setup
    result = Phone(registrar).register(T0, headers=(("Require", "path"),))
    assert result.status == 420
    assert parse_response(result).header("Unsupported") == "path"
    assert location.all() == []


def test_too_many_contacts_in_one_request(setup):
    registrar, location, _ = setup
    contacts = tuple(f"<sip:alice@192.0.2.{n}>" for n in range(11))
    result = Phone(registrar).register(T0, contacts=contacts)
    assert result.status == 403
    assert location.all() == []


def test_over_the_limit_the_binding_expiring_first_goes(setup):
    registrar, location, _ = setup
    phone = Phone(registrar)
    for n in range(10):
        assert phone.register(T0 + n, contacts=(f"<sip:alice@192.0.2.{n}>",)).status == 200
    result = phone.send(T0 + 20, contacts=("<sip:alice@192.0.2.10>",))
    assert result.status == 200
    assert store_effects(result) == [
        SaveBinding(binding=location.lookup("alice", "sip:alice@192.0.2.10")),
        DropBinding(user="alice", contact="sip:alice@192.0.2.0"),
    ]
    assert len(location.contacts("alice", T0 + 20)) == 10
    assert len(contact_lines(result)) == 10


def test_ipv6_phone(setup):
    registrar, location, _ = setup
    phone = Phone(registrar, source=("2001:db8::10", 5062), contacts=("<sip:alice@[2001:db8::10]:5062>",))
    result = phone.register(T0)
    assert result.status == 200
    (binding,) = location.all()
    assert (binding.contact, binding.source_host) == ("sip:alice@[2001:db8::10]:5062", "2001:db8::10")
    top = parse_response(result).top_via
    assert (top.received, top.rport) == ("2001:db8::10", 5062)
    assert location.find_contact("sip:alice@[2001:DB8::10]:5062") == binding


def test_response_without_rport_gets_received_only(setup):
    registrar, _, _ = setup
    result = Phone(registrar).send(T0, rport=False)
    top = parse_response(result).top_via
    assert top.received == "192.0.2.10"
    assert top.rport is None


def test_only_register(setup):
    registrar, _, _ = setup
    request = parse_request(request_bytes(method="OPTIONS"))
    with pytest.raises(LocalProtocolError):
        registrar.handle(request, source=("192.0.2.10", 5062), transport="udp", now=T0)


def test_effects_come_before_the_response_and_in_order(setup):
    """The result carries the store writes; the shell applies them before sending."""
    registrar, location, _ = setup
    phone = Phone(registrar)
    phone.register(T0, contacts=("<sip:alice@192.0.2.10:5062>", "<sip:alice@192.0.2.11>"))
    result = phone.send(
        T0 + 1,
        contacts=("<sip:alice@192.0.2.11>;expires=0", "<sip:alice@192.0.2.12>", "<sip:alice@192.0.2.10:5062>"),
    )
    kinds = [(type(e).__name__, getattr(e, "contact", None) or getattr(getattr(e, "binding", None), "contact", None))
             for e in result.effects]
    assert kinds == [
        ("DropBinding", "sip:alice@192.0.2.11"),
        ("SaveBinding", "sip:alice@192.0.2.12"),
        ("SaveBinding", "sip:alice@192.0.2.10:5062"),
        ("Log", None),
    ]


def test_reload_changes_passwords_and_users(setup):
    registrar, location, authenticator = setup
    phone = Phone(registrar)
    phone.take_challenge(phone.send(T0))
    new = parse_config(CONFIG_TEXT.format(proxy_extra="").replace("alice-secret", "new-secret"))
    registrar.reload(new)
    assert phone.send(T0 + 1).status == 403
    phone.password = "new-secret"
    phone.take_challenge(phone.send(T0 + 2, authorize=False))
    assert phone.send(T0 + 2).status == 200


def test_byte_identical_runs():
    def run() -> list[bytes]:
        registrar, _, _ = make_registrar(seed=7)
        phone = Phone(registrar)
        first = phone.send(T0)
        phone.take_challenge(first)
        return [first.response, phone.send(T0 + 1).response]

    assert run() == run()
