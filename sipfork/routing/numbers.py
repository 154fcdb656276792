"""Phone numbers as they are written and as they arrive.

Numbers in ``proxy.toml`` may be written with visual separators
("0221 669 669 66", "+49-170-1234567"), and a Request-URI user part or a
``tel:`` URI may carry them too (RFC 3966 §5.1.1 ``visual-separator``).
Both sides are reduced to the same plain form before they are compared:
an optional ``+`` followed by digits.

No other normalisation happens: ``+49170…`` and ``0170…`` are different
strings (a national and an international form can only be told apart with
a country code and dialling plan that sipfork does not have). An admin
lists both forms where both arrive, for example as a number's ``aliases``
or two ``callers`` prefixes.
"""

from __future__ import annotations

import re

_SEPARATORS = str.maketrans("", "", " -./()\t")
_PLAIN = re.compile(r"\+?[0-9]+")


def plain_number(text: str) -> str | None:
    """``text`` as ``+`` and digits, or None when it is not a phone number.

    A leading ``tel:`` and visual separators are removed; anything after a
    ``;`` (URI parameters) is dropped.
    """
    if text[:4].lower() == "tel:":
        text = text[4:]
    text = text.split(";", 1)[0].translate(_SEPARATORS)
    if _PLAIN.fullmatch(text):
        return text
    return None
