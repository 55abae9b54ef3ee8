"""A secret setting (a token, a password, a proxy URL with its login) that never shows itself."""

from __future__ import annotations

import hmac
from typing import Any

MASK = "********"


class Secret:
    """A value that ``str()``, ``repr()``, f-strings, ``%`` formatting and logging show as stars, and
    that ``json.dumps`` refuses; :meth:`reveal` gives it to the one call that sends it.

    Deliberately not a ``str`` subclass: code that treats a str subclass as text (``json.dumps``,
    ``"".join``, ``str.__str__``, C extensions) would read the characters and never ask us.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str | Secret = "") -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds text, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that sends it (an HTTP or SMTP call)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time: a comparison's duration must not tell how much of a guess was right.
        return hmac.compare_digest(self._value.encode("utf-8"), other._value.encode("utf-8"))

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled for another process of ours (a run worker): it needs the value to send with it.
        return (Secret, (self._value,))
