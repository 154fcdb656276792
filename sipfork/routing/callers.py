"""The ``callers`` filter of a forwarding rule (CONFIG.md, Semantics 1).

Entries:

- ``"anonymous"`` matches a caller who withholds the number: no caller at
  all (None), or a From user part ``anonymous`` (RFC 3323), in any case.
- ``"+491701234567"`` matches exactly that number.
- ``"+49170*"`` matches every number starting with ``+49170``; ``"*"`` alone
  matches every caller who shows a number or name.
- ``"alice"`` (a configured user name) matches calls from that user.

Numbers are compared in their plain form (see ``numbers.plain_number``:
visual separators and ``tel:`` are removed on both sides) and otherwise as
written: ``"+49170*"`` does *not* match ``"01701234567"``. List both forms
when calls arrive in both.
"""

from __future__ import annotations

from attrs import frozen

from sipfork.routing.numbers import plain_number

ANONYMOUS = "anonymous"


class CallerPatternError(ValueError):
    pass


@frozen(kw_only=True)
class CallerPattern:
    text: str  # as written
    kind: str  # "anonymous" | "exact" | "prefix"
    value: str  # the plain number, prefix or user name

    def matches(self, caller: str | None) -> bool:
        """``caller`` as given by ``normalise_caller``."""
        if self.kind == "anonymous":
            return caller is None
        if caller is None:
            return False
        if self.kind == "prefix":
            return caller.startswith(self.value)
        return caller == self.value


def parse_caller_pattern(text: str, user_names: frozenset[str]) -> CallerPattern:
    """Read one ``callers`` entry; raises CallerPatternError."""
    if text.lower() == ANONYMOUS:
        return CallerPattern(text=text, kind="anonymous", value="")
    if text == "*":
        return CallerPattern(text=text, kind="prefix", value="")
    if text.endswith("*"):
        prefix = plain_number(text[:-1])
        if prefix is not None:
            return CallerPattern(text=text, kind="prefix", value=prefix)
    else:
        number = plain_number(text)
        if number is not None:
            return CallerPattern(text=text, kind="exact", value=number)
        if text in user_names:
            return CallerPattern(text=text, kind="exact", value=text)
    raise CallerPatternError(
        f'"{text}" is not a number, a prefix ending in "*", "anonymous" or a user name'
    )


def normalise_caller(caller: str | None) -> str | None:
    """The caller as the patterns compare it: None for anonymous, a plain
    number when it is one, else the text unchanged (a user name)."""
    if caller is None or caller == "" or caller.lower() == ANONYMOUS:
        return None
    number = plain_number(caller)
    return number if number is not None else caller


def caller_matches(patterns: tuple[CallerPattern, ...], caller: str | None) -> bool:
    """Whether the filter lets the (normalised) caller take the rule; an empty
    filter lets everybody in."""
    if not patterns:
        return True
    return any(pattern.matches(caller) for pattern in patterns)
