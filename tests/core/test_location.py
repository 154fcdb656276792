"""The location table: current contacts, q order, expiry, snapshot, lookups."""

from __future__ import annotations

import pytest

from sipfork.bindings import Binding
from sipfork.core.effects import DropBinding
from sipfork.core.location import Location, uris_equivalent
from sipfork.routing.plan import Hop
from sipfork.sip.uri import parse_uri

T0 = 1_700_000_000.0


def binding(user="alice", contact="sip:alice@192.0.2.1:5062", *, expires_at=T0 + 3600, **changes):
    values = dict(
        user=user,
        contact=contact,
        source_host="192.0.2.1",
        source_port=5062,
        transport="udp",
        expires_at=expires_at,
        registered_at=T0,
    )
    values.update(changes)
    return Binding(**values)


def test_empty():
    location = Location()
    assert location.contacts("alice", T0) == []
    assert dict(location.snapshot(T0)) == {}
    assert location.next_expiry() is None
    assert location.expire(T0 + 10**9) == []
    assert location.find_contact("sip:alice@192.0.2.1:5062") is None
    assert location.all() == []


def test_contacts_are_current_and_highest_q_first():
    low = binding(contact="sip:a@192.0.2.1", q=0.1)
    high = binding(contact="sip:b@192.0.2.2", q=0.9)
    plain = binding(contact="sip:c@192.0.2.3")  # q 1.0
    gone = binding(contact="sip:d@192.0.2.4", expires_at=T0 + 10)
    other = binding(user="bob", contact="sip:bob@192.0.2.5")
    location = Location([low, high, plain, gone, other])
    assert location.contacts("alice", T0) == [plain, gone, high, low]
    assert location.contacts("alice", T0 + 10) == [plain, high, low]  # expires_at is exclusive
    assert location.contacts("bob", T0) == [other]
    assert location.contacts("carol", T0) == []
    assert len(location) == 5


def test_equal_q_keeps_registration_order():
    first = binding(contact="sip:1@h")
    second = binding(contact="sip:2@h")
    location = Location([first, second])
    assert location.contacts("alice", T0) == [first, second]
    refreshed = binding(contact="sip:1@h", cseq=2)  # a refresh keeps its place
    location.put(refreshed)
    assert location.contacts("alice", T0) == [refreshed, second]


def test_put_replaces_and_drop_removes():
    location = Location()
    location.put(binding(cseq=1))
    refreshed = binding(cseq=2, expires_at=T0 + 7200)
    location.put(refreshed)
    assert location.all() == [refreshed]
    location.drop("alice", "sip:alice@192.0.2.1:5062")
    location.drop("alice", "sip:alice@192.0.2.1:5062")  # absent: no error
    location.drop("nobody", "sip:x@y")
    assert location.all() == []
    assert len(location) == 0
    assert location.next_expiry() is None


def test_expire_returns_drop_effects_in_expiry_order():
    late = binding(contact="sip:late@h", expires_at=T0 + 300)
    early = binding(user="bob", contact="sip:early@h", expires_at=T0 + 100)
    keep = binding(contact="sip:keep@h", expires_at=T0 + 1000)
    location = Location([late, early, keep])
    assert location.next_expiry() == T0 + 100
    assert location.expire(T0 + 99) == []
    assert location.expire(T0 + 300) == [
        DropBinding(user="bob", contact="sip:early@h"),
        DropBinding(user="alice", contact="sip:late@h"),
    ]
    assert location.all() == [keep]
    assert location.next_expiry() == T0 + 1000


def test_refresh_moves_the_expiry():
    location = Location([binding(expires_at=T0 + 100)])
    location.put(binding(expires_at=T0 + 500))
    assert location.next_expiry() == T0 + 500
    assert location.expire(T0 + 200) == []  # the old deadline is stale
    assert len(location.all()) == 1
    assert location.expire(T0 + 500) == [DropBinding(user="alice", contact="sip:alice@192.0.2.1:5062")]


def test_dropped_binding_does_not_expire_later():
    location = Location([binding(expires_at=T0 + 100)])
    location.drop("alice", "sip:alice@192.0.2.1:5062")
    assert location.next_expiry() is None
    assert location.expire(T0 + 100) == []


def test_many_refreshes_keep_the_heap_small():
    location = Location()
    for step in range(1000):
        location.put(binding(expires_at=T0 + step))
    assert len(location._expiries) <= 2 * 1 + 64 + 1
    assert location.next_expiry() == T0 + 999


def test_snapshot_is_cached_and_invalidated():
    a = binding(contact="sip:a@h", expires_at=T0 + 100, q=0.5)
    b = binding(contact="sip:b@h", expires_at=T0 + 200)
    location = Location([a, b])
    first = location.snapshot(T0)
    assert dict(first) == {"alice": (b, a)}
    assert location.snapshot(T0 + 50) is first  # nothing changed, nothing expired
    with pytest.raises(TypeError):
        first["bob"] = ()  # read-only
    after_expiry = location.snapshot(T0 + 100)
    assert dict(after_expiry) == {"alice": (b,)}  # a expired, though not yet removed
    c = binding(user="bob", contact="sip:c@h")
    location.put(c)
    changed = location.snapshot(T0 + 100)
    assert changed is not after_expiry
    assert dict(changed) == {"alice": (b,), "bob": (c,)}
    location.drop("bob", "sip:c@h")
    assert dict(location.snapshot(T0 + 100)) == {"alice": (b,)}
    assert dict(location.snapshot(T0 + 200)) == {}


def test_find_contact_exact_then_equivalent():
    phone = binding(contact="sip:alice@192.0.2.1:5062;transport=tcp;ob")
    location = Location([phone])
    assert location.find_contact("sip:alice@192.0.2.1:5062;transport=tcp;ob") == phone
    assert location.find_contact("<sip:alice@192.0.2.1:5062;transport=tcp;ob>") == phone
    # §19.1.4: host is case-insensitive, transport value too, params only in one side are ignored
    assert location.find_contact("sip:alice@192.0.2.1:5062;TRANSPORT=TCP") == phone
    assert location.find_contact("sip:%61lice@192.0.2.1:5062;transport=tcp") == phone
    # ... but transport must match when either has it, and the port as written
    assert location.find_contact("sip:alice@192.0.2.1:5062") is None
    assert location.find_contact("sip:alice@192.0.2.1;transport=tcp") is None
    assert location.find_contact("sips:alice@192.0.2.1:5062;transport=tcp") is None
    assert location.find_contact("not a uri") is None


def test_find_contact_prefers_the_latest_registration():
    older = binding(user="alice", contact="sip:desk@192.0.2.9", registered_at=T0)
    newer = binding(user="bob", contact="sip:desk@192.0.2.9", registered_at=T0 + 5)
    location = Location([older, newer])
    assert location.find_contact("sip:desk@192.0.2.9") == newer
    assert location.find_contact("sip:desk@192.0.2.9;x=1") == newer
    location.drop("bob", "sip:desk@192.0.2.9")
    assert location.find_contact("sip:desk@192.0.2.9") == older
    assert location.find_contact("sip:DESK@192.0.2.9") is None  # user part is case-sensitive


def test_lookup_by_user_and_equivalent_contact():
    phone = binding(contact="sip:alice@Phone.example:5062;line=abc")
    location = Location([phone, binding(user="bob", contact="sip:alice@phone.example:5062")])
    assert location.lookup("alice", "sip:alice@Phone.example:5062;line=abc") == phone
    assert location.lookup("alice", "sip:alice@phone.example:5062") == phone
    assert location.lookup("alice", "sip:alice@phone.example:5062;line=xyz") is None
    assert location.lookup("carol", "sip:alice@phone.example:5062") is None


@pytest.mark.parametrize(
    ("first", "second", "equal"),
    [
        # RFC 3261 §19.1.4 examples
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp", True),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5", True),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on", True),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on", True),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com", True),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x", True),
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP", False),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060", False),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp", False),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp", False),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting", False),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4", False),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off", False),
        ("tel:+4922166966966", "tel:+4922166966966", True),
        ("tel:+4922166966966", "sip:+4922166966966@h", False),
    ],
)
def test_uri_comparison(first, second, equal):
    assert uris_equivalent(parse_uri(first), parse_uri(second)) is equal
    assert uris_equivalent(parse_uri(second), parse_uri(first)) is equal


def test_hop_is_the_source_and_over_tcp_also_the_contact():
    udp = binding(contact="sip:alice@10.0.0.7:5070")
    assert udp.hop == Hop(host="192.0.2.1", port=5062, transport="udp")
    assert udp.hop is udp.hop  # worked out once
    tcp = binding(contact="sip:alice@10.0.0.7:5070;transport=tcp", transport="tcp")
    assert tcp.hop == Hop(host="192.0.2.1", port=5062, transport="tcp", alternate=("10.0.0.7", 5070))
    same = binding(contact="sip:alice@192.0.2.1:5062;transport=tcp", transport="tcp")
    assert same.hop.alternate is None
    assert binding(contact="sip:alice@10.0.0.7;transport=tcp", transport="tcp").hop.alternate == ("10.0.0.7", 5060)
    assert binding(contact="not a uri", transport="tcp").hop.alternate is None
    assert udp == binding(contact="sip:alice@10.0.0.7:5070")  # the hop is not part of the value


def test_shared_strings_are_interned():
    # (the user is the configuration's string already; the store interns it on load)
    first = binding(user_agent="".join(["Phone/", "1.0"]), source_host="".join(["192.0.", "2.1"]))
    second = binding(user_agent="".join(["Phone", "/1.0"]), source_host="".join(["192.0.2", ".1"]))
    assert first.user_agent is second.user_agent
    assert first.source_host is second.source_host and first.transport is second.transport
    port, q = int("5062"), float("0.5")
    assert binding(source_port=port, q=q).source_port is binding(source_port=int("5062"), q=float("0.5")).source_port
    assert binding(q=q).q is binding(q=float("0.5")).q
    assert binding(q=1).q == 1 and type(binding(q=1).q) is int  # only floats are shared


def test_find_contact_with_several_bindings_under_one_key():
    # The same phone registered for two users, with two spellings of its URI,
    # and an IPv6 contact: every lookup goes through the loose-key index.
    a = binding(user="alice", contact="sip:desk@192.0.2.9:5060", registered_at=T0)
    b = binding(user="bob", contact="sip:desk@192.0.2.9:5060;ob", registered_at=T0 + 1)
    v6 = binding(user="carol", contact="sip:carol@[2001:DB8::1]:5062", registered_at=T0)
    location = Location([a, b, v6])
    assert location.find_contact("sip:desk@192.0.2.9:5060") == a  # exact text beats a later equivalent
    assert location.find_contact("sip:desk@192.0.2.9:5060;ob") == b
    assert location.find_contact("sip:desk@192.0.2.9:5060;x=1") == b  # equivalent: latest wins
    assert location.find_contact("sip:carol@[2001:db8::1]:5062") == v6
    assert location.lookup("bob", "sip:desk@192.0.2.9:5060") == b
    # carol's contact names carol: found through her user, not in the loose-key index
    assert location._by_key.keys() == {"sip:desk@192.0.2.9:5060"}
    location.drop("bob", "sip:desk@192.0.2.9:5060;ob")
    assert location.find_contact("sip:desk@192.0.2.9:5060;x=1") == a
    location.drop("alice", "sip:desk@192.0.2.9:5060")
    assert location.find_contact("sip:desk@192.0.2.9:5060") is None
    assert location._by_key == {}
    location.drop("carol", "sip:carol@[2001:DB8::1]:5062")
    assert location.find_contact("sip:carol@[2001:db8::1]:5062") is None
    assert location._by_key == {} and location._by_user == {} and len(location) == 0


def test_find_contact_through_the_user_part_and_the_loose_key_index():
    # The usual contact names its user and is found through it; the same
    # phone registered by another user too: both are candidates, latest wins.
    own = binding(user="desk", contact="sip:desk@192.0.2.9:5060", registered_at=T0)
    location = Location([own])
    assert location._by_key == {}
    assert location.find_contact("sip:desk@192.0.2.9:5060") == own
    assert location.find_contact("sip:desk@192.0.2.9:5060;ob") == own  # equivalent
    assert location.find_contact("sip:%64esk@192.0.2.9:5060") == own  # escaped user part
    assert location.find_contact("sip:desk@192.0.2.9:5061") is None
    assert location.find_contact("sip:other@192.0.2.9:5060") is None
    assert location.find_contact("tel:+15551234") is None
    other = binding(user="bob", contact="sip:desk@192.0.2.9:5060", registered_at=T0 + 1)
    location.put(other)
    assert location.find_contact("sip:desk@192.0.2.9:5060") == other
    location.put(binding(user="desk", contact="sip:desk@192.0.2.9:5060", registered_at=T0 + 2))
    assert location.find_contact("sip:desk@192.0.2.9:5060").user == "desk"
    assert location._by_key.keys() == {"sip:desk@192.0.2.9:5060"}
    # an escaped user part still names its user; a tel URI and a URI that
    # does not parse are in the index
    odd = [binding(user="desk", contact="sip:%64esk@192.0.2.8"), binding(user="tel", contact="tel:+15551234"),
           binding(user="x", contact="not a uri")]
    for each in odd:
        location.put(each)
    assert location._by_key.keys() == {"sip:desk@192.0.2.9:5060", "tel:+15551234", "not a uri"}
    assert location.find_contact("sip:desk@192.0.2.8") == odd[0]
    assert location.find_contact("tel:+15551234") == odd[1]
    assert location.find_contact("not a uri") == odd[2]
    for each in odd:
        assert location.drop(each.user, each.contact) == each
    location.drop("bob", "sip:desk@192.0.2.9:5060")
    assert location._by_key == {} and len(location) == 1
    assert location.expire(T0 + 10**9) == [DropBinding(user="desk", contact="sip:desk@192.0.2.9:5060")]
    assert location.find_contact("sip:desk@192.0.2.9:5060") is None and len(location) == 0


def test_a_refreshed_contact_keys_the_index_with_the_new_binding_text():
    # (bob's contact names alice: it is in the loose-key index)
    location = Location([binding(user="bob", contact="".join(["sip:alice@", "192.0.2.1:5062"]))])
    refreshed = binding(user="bob", contact="".join(["sip:alice@192.0.2.1", ":5062"]), cseq=2)
    location.put(refreshed)
    [key] = location._by_key
    assert key is refreshed.contact  # the replaced binding's text is not kept alive by the index


def test_heap_of_many_bindings_stays_within_a_quarter_of_stale_entries():
    location = Location([binding(contact=f"sip:{i}@h", expires_at=T0 + i) for i in range(400)])
    for round_ in range(3):
        for i in range(400):
            location.put(binding(contact=f"sip:{i}@h", expires_at=T0 + 1000 * (round_ + 1) + i))
    assert len(location._expiries) <= 400 + 100 + 64 + 1
    assert location.next_expiry() == T0 + 3000
    assert len(location.expire(T0 + 3199)) == 200
    assert location.next_expiry() == T0 + 3200


def test_snapshot_reads_only_the_users_asked_for():
    location = Location([binding(user=f"u{i}", contact=f"sip:u{i}@h") for i in range(1000)])
    view = location.snapshot(T0)
    assert view.get("u7") == (location.contacts("u7", T0)[0],)
    assert view.get("nobody") is None and view.get("nobody", ()) == ()
    assert "u7" in view and "nobody" not in view
    with pytest.raises(KeyError):
        view["nobody"]
    assert len(view) == 1000


def test_restore_takes_a_change_back_unless_the_contact_changed_again() -> None:
    old, new, other = binding(expires_at=T0 + 60), binding(expires_at=T0 + 3600), binding(expires_at=T0 + 1800)
    location = Location([old])
    assert location.put(new) is old  # the registrar keeps what a change replaced
    location.restore("alice", old.contact, changed_to=new, before=old)
    assert location.bindings("alice") == [old] and location.next_expiry() == T0 + 60
    assert location.drop("alice", old.contact) is old
    location.restore("alice", old.contact, changed_to=None, before=old)
    assert location.bindings("alice") == [old]
    location.put(new)
    location.restore("alice", new.contact, changed_to=new, before=None)  # a new contact: gone again
    assert location.bindings("alice") == []
    location.put(new)
    location.put(other)  # read from the store since (another worker): what the store has
    location.restore("alice", new.contact, changed_to=new, before=old)
    assert location.bindings("alice") == [other]
