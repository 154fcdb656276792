"""proxy.toml → one frozen, validated configuration (CONFIG.md).

``parse_config(text)`` and ``load_config(path)`` return a ``Config`` or raise
``ConfigError``, whose message lists every problem found, each as
``FILE:LINE: KEY: what is wrong`` (for example
``proxy.toml:14: number[0].forwarding[1].schedule[0]: "mon-fry 8-18" is not …``).
Keys are written as in the file, list positions counted from 0.

Decisions beyond CONFIG.md (documented for admins in examples/README.md):

- Optional keys and their defaults: ``[proxy]`` ``listen`` (udp and tcp on
  127.0.0.1:5060), ``data_dir`` ("var"), ``timezone`` (the machine's zone,
  "UTC" when it cannot be told), ``ring_time`` (30), ``digest_algorithms``
  (["SHA-256", "MD5"]), ``workers`` (1; "auto" = one per CPU). A forwarding's
  ``type`` defaults to "always", ``ringing`` to "parallel", ``duration`` to
  ``ring_time``, ``on`` to all three reasons; a number's ``otherwise`` to
  "unavailable". ``domain`` is required.
- User and group names start with a letter (so they never look like a number)
  and may hold letters, digits, ".", "_" and "-"; "anonymous" is reserved.
  Extensions are digits and must differ from every number and alias.
- Numbers may be written with spaces, "-", "/", "." or parentheses; they are
  kept in their plain form (``+`` and digits).
- A target written as digits that are a user's extension rings that user; a
  target naming one of our own numbers is an error (name its targets instead).
- ``delay`` is for parallel rules only and must be shorter than the rule's
  duration; a target's ``duration`` is 1–600 (``"unlimited"`` is set on the
  rule). In a sequential rule, targets after one that rings without limit
  would never ring: an error.
- ``otherwise`` may name any target; a user or group there rings as one more
  parallel step with ``ring_time`` (see routing.planner).
- Hosts (listen, gateway and ``sip:`` targets) are IP literals or
  "localhost" (taken as 127.0.0.1): the proxy does no DNS. Listen port 0
  asks the system for a free port (tests).

The package, by job: ``model`` (the frozen attrs classes), ``errors``
(``Problem``, ``ConfigError``), ``lines`` (the TOML line scanner that finds
the line of a key), ``values`` (reading and checking single values) and
``parse`` (the sections and the whole file: ``parse_config``, ``load_config``).
"""

from __future__ import annotations

from sipfork.config.errors import ConfigError, Problem
from sipfork.config.model import (DIGEST_ALGORITHMS, Config, Forwarding, Gateway, Group, Listen, Number,
                                  ProxySettings, Target, User)
from sipfork.config.parse import REASON_WORDS, STATUS_WORDS, load_config, parse_config
from sipfork.config.values import MAX_DURATION

__all__ = [
    "DIGEST_ALGORITHMS", "MAX_DURATION", "REASON_WORDS", "STATUS_WORDS",
    "Config", "ConfigError", "Forwarding", "Gateway", "Group", "Listen", "Number",
    "Problem", "ProxySettings", "Target", "User", "load_config", "parse_config",
]
