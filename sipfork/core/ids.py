"""Identifiers the core makes up (branches, tags, nonce secrets).

Randomness comes from a source handed in at construction (DESIGN.md), so a
test with a seeded source gets byte-identical runs.
"""

from __future__ import annotations

from collections.abc import Callable

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


class Ids:
    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self._random_bytes = random_bytes

    def token(self, size: int = 8) -> str:
        """``size`` random bytes as hex."""
        return self._random_bytes(size).hex()

    def branch(self) -> str:
        return MAGIC_COOKIE + self.token(8)

    def tag(self) -> str:
        return self.token(6)

    def secret(self) -> bytes:
        return self._random_bytes(32)
