"""Where keys are: line numbers of tables, keys and array elements in TOML
text, for messages that name the line (tomllib keeps no positions)."""

from __future__ import annotations

import bisect
import re

Path_ = tuple[str | int, ...]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")  # a number, boolean or date: up to the next separator


class _Lines:
    """Line numbers of tables, keys and array elements in TOML text.

    tomllib keeps no positions, so this walks the (already valid) text once:
    table headers, ``key = value`` lines, and the elements of arrays and
    inline tables, each recorded under its path such as
    ``("number", 0, "forwarding", 1, "targets", 2)``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] = []
        self.where: dict[Path_, int] = {}
        self.pos = 0
        self._walked = False  # walked on the first question: most files need no line number

    def line(self, path: Path_) -> int | None:
        if not self._walked:
            self._walked = True
            self.starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
            try:
                self._document()
            except (IndexError, ValueError):  # a construct this small walker does not know
                pass
        for end in range(len(path), 0, -1):
            line = self.where.get(path[:end])
            if line is not None:
                return line
        return None

    def _line_at(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def _skip(self, newlines: bool) -> None:
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.pos += 1
            elif char == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        arrays: dict[Path_, int] = {}
        table: Path_ = ()
        text = self.text
        while True:
            self._skip(newlines=True)
            if self.pos >= len(text):
                return
            line = self._line_at(self.pos)
            if text[self.pos] == "[":
                double = text.startswith("[[", self.pos)
                self.pos += 2 if double else 1
                keys = self._key()
                self.pos = text.index("]", self.pos) + (2 if double else 1)
                resolved: Path_ = ()
                for key in keys[:-1]:
                    resolved += (key,)
                    if resolved in arrays:
                        resolved += (arrays[resolved],)
                resolved += (keys[-1],)
                if double:
                    self.where.setdefault(resolved, line)
                    arrays[resolved] = arrays.get(resolved, -1) + 1
                    resolved += (arrays[resolved],)
                table = resolved
                self.where.setdefault(table, line)
            else:
                self._key_value(table)

    def _key(self) -> list[str]:
        keys = []
        text = self.text
        while True:
            self._skip(newlines=False)
            char = text[self.pos]
            if char in "\"'":
                end = text.index(char, self.pos + 1)
                keys.append(text[self.pos + 1 : end])
                self.pos = end + 1
            else:
                match = _BARE_KEY.match(text, self.pos)
                if not match:
                    raise ValueError("not a key")
                keys.append(match[0])
                self.pos = match.end()
            self._skip(newlines=False)
            if text[self.pos] != ".":
                return keys
            self.pos += 1

    def _key_value(self, table: Path_) -> None:
        line = self._line_at(self.pos)
        path = table + tuple(self._key())
        self.where.setdefault(path, line)
        self.pos += 1  # "="
        self._value(path)

    def _value(self, path: Path_) -> None:
        self._skip(newlines=False)
        text = self.text
        char = text[self.pos]
        if text.startswith('"""', self.pos) or text.startswith("'''", self.pos):
            quote = text[self.pos : self.pos + 3]
            pos = self.pos + 3
            while True:
                end = text.index(quote, pos)
                if quote == "'''" or not _escaped(text, end):
                    break
                pos = end + 1
            self.pos = end + 3
            while text.startswith(quote[0], self.pos):  # up to two quotes may close the string
                self.pos += 1
        elif char == '"':
            pos = self.pos + 1
            while True:
                end = text.index('"', pos)
                if not _escaped(text, end):
                    break
                pos = end + 1
            self.pos = end + 1
        elif char == "'":
            self.pos = text.index("'", self.pos + 1) + 1
        elif char == "[":
            self.pos += 1
            index = 0
            while True:
                self._skip(newlines=True)
                if text[self.pos] == "]":
                    self.pos += 1
                    return
                self.where.setdefault(path + (index,), self._line_at(self.pos))
                self._value(path + (index,))
                index += 1
                self._skip(newlines=True)
                if text[self.pos] == ",":
                    self.pos += 1
        elif char == "{":
            self.pos += 1
            while True:
                self._skip(newlines=False)
                if text[self.pos] == "}":
                    self.pos += 1
                    return
                self._key_value(path)
                self._skip(newlines=False)
                if text[self.pos] == ",":
                    self.pos += 1
        else:
            match = _SCALAR.match(text, self.pos)
            self.pos = match.end() if match else self.pos + 1


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos > 0 and text[pos - 1] == "\\":
        backslashes += 1
        pos -= 1
    return backslashes % 2 == 1
