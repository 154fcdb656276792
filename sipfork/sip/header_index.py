"""The header-section index: where each header field of a message is.

:func:`index_header_section` reads the header section of a received message
(RFC 3261 §7.3) and records, for each field, where its name, value and line
are in the received bytes, as a :data:`Field` tuple; :mod:`sipfork.sip.message`
builds its Message on that index and decodes a value only when it is read.

Every received message passes through here, so it is built for speed:

- One pass over the bytes.  The usual message (CRLF line ends, no stray CR
  or LF) is split in C and indexed line by line; when no line is folded (the
  common case), the same loop also builds Message's fields-by-key index.
  Anything else (bare LF line ends, a stray CR) takes the general loop
  :func:`_index_lines`, one ``find`` per line, which gives the same index (a
  property test checks that they agree).
- Bounded caches.  Header names as written map to their index keys
  (``_NAME_KEYS``); whole header lines that come again and again map to what
  they say (``_LINES``), so a repeated line costs one dict lookup.
- Plain tuples with positional constants (``KEY``, ``VALUE_START``, ...)
  rather than objects: cheap to build, and outside the cyclic GC's work.

Malformed input raises :class:`RemoteProtocolError` (400).
"""

from __future__ import annotations

import re
from typing import Final

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.grammar import COMPACT_KEYS

# One header field (a logical line, folded continuations included) is the
# tuple (key, line_start, value_start, value_end, line_end, folded):
# key is the lowercased long name as bytes ("v" -> b"via"); line_start is the
# first byte of the name; value_start..value_end is the value without
# surrounding white space; line_end is just past the line's final LF.
Field = tuple[bytes, int, int, int, int, bool]
KEY: Final = 0
LINE_START: Final = 1
VALUE_START: Final = 2
VALUE_END: Final = 3
LINE_END: Final = 4
FOLDED: Final = 5

_TOKEN_BYTES_RE = re.compile(rb"[A-Za-z0-9.!%*_+`'~-]+")
_WHITESPACE = (32, 9)


# Header names as written -> index keys.  A bounded memo: the names a proxy
# sees are few, and one dict lookup replaces validating, lowercasing and
# expanding the compact form on every line.
_NAME_KEYS: dict[bytes, bytes] = {}
_NAME_KEYS_LIMIT = 2048


def _name_key(name: bytes) -> bytes:
    """The index key for a header name as written (before the colon); 400 if not a token."""
    stripped = name.rstrip(b" \t")
    if _TOKEN_BYTES_RE.fullmatch(stripped) is None:
        raise RemoteProtocolError("bad header name")
    key = stripped.lower()
    key = COMPACT_KEYS.get(key, key)
    if len(_NAME_KEYS) < _NAME_KEYS_LIMIT:
        _NAME_KEYS[name] = key
    return key


def index_header_section(
    data: bytes, pos: int
) -> tuple[list[Field], int, int, dict[bytes, tuple[Field, ...]] | None]:
    """Index header fields from ``pos``; returns (fields, header_end,
    body_start, the fields by key or None when not built here).

    The usual message (CRLF line ends, no stray CR or LF) is split in C and
    indexed line by line; anything else takes the general loop.
    """
    if data.startswith(b"\r\n", pos):
        return [], pos, pos + 2, None  # no header fields at all
    end = data.find(b"\r\n\r\n", pos)
    if end >= 0:
        head = data[pos:end]
        lines = head.split(b"\r\n")
        breaks = len(lines) - 1
        if head.count(b"\n") == breaks and head.count(b"\r") == breaks:
            if b"\n " in head or b"\n\t" in head or head[:1] in (b" ", b"\t"):
                return _index_crlf_lines(lines, pos), end + 2, end + 4, None
            fields, index = _index_unfolded_lines(lines, pos)
            return fields, end + 2, end + 4, index
    fields, header_end, body_start = _index_lines(data, pos)
    return fields, header_end, body_start, None


def _index_crlf_lines(lines: list[bytes], pos: int) -> list[Field]:
    """Index the header lines of a CRLF message whose header section starts at ``pos``."""
    fields: list[Field] = []
    append = fields.append
    known = _NAME_KEYS.get
    for line in lines:
        size = len(line)
        line_end = pos + size + 2
        if line[:1] in (b" ", b"\t"):
            # A continuation line (RFC 3261 §7.3.1): extend the previous field.
            if not fields:
                raise RemoteProtocolError("continuation line before any header")
            key, line_start, value_start, value_end, _, _ = fields[-1]
            text = line.rstrip(b" \t")
            if text:
                if value_start == value_end:  # the value starts on this line
                    value_start = pos + size - len(line.lstrip(b" \t"))
                value_end = pos + len(text)
            fields[-1] = (key, line_start, value_start, value_end, line_end, True)
            pos = line_end
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            raise RemoteProtocolError("header line without a colon")
        key = known(name) or _name_key(name)
        stripped = value.lstrip(b" \t")
        value_start = pos + size - len(stripped)
        append((key, pos, value_start, value_start + len(stripped.rstrip(b" \t")), line_end, False))
        pos = line_end
    return fields


def _index_unfolded_lines(lines: list[bytes], pos: int) -> tuple[list[Field], dict[bytes, tuple[Field, ...]]]:
    """:func:`_index_crlf_lines` for lines none of which continues another,
    and the fields by key (Message's index) in the same pass.

    Many lines come again and again (Content-Length, CSeq, Max-Forwards, a
    dialog's From, To, Call-ID, Contact and Record-Route in each of its
    messages): what a line says is looked up by its bytes before it is
    worked out."""
    fields: list[Field] = []
    append = fields.append
    index: dict[bytes, tuple[Field, ...]] = {}
    known = _NAME_KEYS.get
    seen = _LINES.get
    for line in lines:
        found = seen(line)
        if found is None:
            name, colon, value = line.partition(b":")
            if not colon:
                raise RemoteProtocolError("header line without a colon")
            stripped = value.lstrip(b" \t")
            size = len(line)
            offset = size - len(stripped)
            found = (known(name) or _name_key(name), offset, offset + len(stripped.rstrip(b" \t")), size + 2)
            if size <= _LINE_CACHEABLE:
                if len(_LINES) >= _LINES_LIMIT:
                    _LINES.clear()
                _LINES[line] = found
        key, value_start, value_end, length = found
        line_end = pos + length
        item = (key, pos, pos + value_start, pos + value_end, line_end, False)
        append(item)
        if key in index:
            index[key] += (item,)
        else:
            index[key] = (item,)
        pos = line_end
    return fields, index


# header line -> (key, value start, value end, length with its CRLF); bounded.
_LINES: dict[bytes, tuple[bytes, int, int, int]] = {}
_LINES_LIMIT = 4096
_LINE_CACHEABLE = 256


def _index_lines(data: bytes, pos: int) -> tuple[list[Field], int, int]:
    """The general indexing loop: CRLF or bare LF line ends, one ``find`` per line."""
    fields: list[Field] = []
    find = data.find
    while True:
        newline = find(b"\n", pos)
        if newline < 0:
            raise RemoteProtocolError("header section does not end with an empty line")
        end = newline - 1 if newline > pos and data[newline - 1] == 13 else newline
        if find(b"\r", pos, end) >= 0:
            raise RemoteProtocolError("stray CR in a header line")
        if end == pos:
            return fields, pos, newline + 1
        first = data[pos]
        if first == 32 or first == 9:
            # A continuation line (RFC 3261 §7.3.1): extend the previous field.
            if not fields:
                raise RemoteProtocolError("continuation line before any header")
            key, line_start, value_start, value_end, _, _ = fields[-1]
            cont_end = end
            while cont_end > pos and data[cont_end - 1] in _WHITESPACE:
                cont_end -= 1
            if cont_end > pos:
                if value_start == value_end:
                    # The value so far was empty: it starts on this line.
                    value_start = pos
                    while data[value_start] in _WHITESPACE:
                        value_start += 1
                value_end = cont_end
            fields[-1] = (key, line_start, value_start, value_end, newline + 1, True)
            pos = newline + 1
            continue
        colon = find(b":", pos, end)
        if colon < 0:
            raise RemoteProtocolError("header line without a colon")
        name = data[pos:colon]
        key = _NAME_KEYS.get(name) or _name_key(name)
        value_start = colon + 1
        while value_start < end and data[value_start] in _WHITESPACE:
            value_start += 1
        value_end = end
        while value_end > value_start and data[value_end - 1] in _WHITESPACE:
            value_end -= 1
        fields.append((key, pos, value_start, value_end, newline + 1, False))
        pos = newline + 1
