"""What is wrong with a configuration: ``Problem`` (one key, one line) and
``ConfigError`` (all of them, one ``FILE:LINE: KEY: problem`` a line)."""

from __future__ import annotations

from attrs import frozen


@frozen(kw_only=True)
class Problem:
    key: str  # "number[0].forwarding[1].schedule[0]"
    line: int | None
    message: str


class ConfigError(Exception):
    """Everything wrong with a configuration, one ``FILE:LINE: KEY: problem`` a line."""

    def __init__(self, problems: list[Problem], source: str) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(self._format(p) for p in self.problems))

    def _format(self, problem: Problem) -> str:
        where = self.source if problem.line is None else f"{self.source}:{problem.line}"
        return f"{where}: {problem.key}: {problem.message}" if problem.key else f"{where}: {problem.message}"

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None

    @property
    def key(self) -> str:
        return self.problems[0].key if self.problems else ""
