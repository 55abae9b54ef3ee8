"""The ``.env`` file, read exactly as every ``dagster`` command reads it: by python-dotenv.

Dagster puts the values of ``.env`` into the environment of its processes, and the
environment wins over the file in :func:`~aivj_assets.settings.load_settings`; a parser of our
own that disagreed with dotenv on one line (quotes, escapes, comments) would give the daemon
one value and the command line another. So the values come from ``dotenv_values`` itself; only
what dotenv cannot do is done here: decoding (a UTF-8 BOM, UTF-16 as PowerShell writes it)
and refusing a line dotenv would skip with a warning.
"""

from __future__ import annotations

import io
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

# What dotenv cannot read: said without the line's text, which may hold a secret.
_MALFORMED = ("not a KEY=VALUE line that python-dotenv (which Dagster uses) can read: a quote not closed, "
              "text after a closing quote, or a space instead of '='; the line is not shown, it may hold a secret")
_NO_VALUE = ("a name without '=' and a value, which python-dotenv (which Dagster uses) leaves unset; "
             "the line is not shown, it may hold a secret")


def decode_env_bytes(path: Path, raw: bytes) -> tuple[str, str]:
    """(text, encoding) of a ``.env`` file: UTF-16 with its BOM, else UTF-8 with or without one."""
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if encoding == "utf-8-sig":
        encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    return text, encoding


def check_env_text(path: Path, text: str) -> None:
    """Raise ValueError naming ``path:line`` for the first line python-dotenv cannot read."""
    for binding in parse_stream(io.StringIO(text)):
        problem = _MALFORMED if binding.error else _NO_VALUE if binding.key is not None and binding.value is None else ""
        if problem:
            # A statement's text starts with the blank lines before it: count to its first character.
            string = binding.original.string
            line = binding.original.line + string[: len(string) - len(string.lstrip())].count("\n")
            raise ValueError(f"{path}:{line}: {problem}")


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of a ``.env`` file as python-dotenv reads them ({} when there is none).

    dotenv's rules: ``export`` allowed; ``#`` after a space starts a comment in an unquoted value;
    single quotes keep the text as written; double quotes expand ``\\n``, ``\\t``, ``\\a``, ``\\\\``...
    (so a Windows path goes unquoted or in single quotes); ``${NAME}`` is replaced outside single
    quotes; a quoted value may span lines. Errors name the file and the line, never its text.
    """
    if not path.is_file():
        return {}
    text, _ = decode_env_bytes(path, path.read_bytes())
    check_env_text(path, text)
    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}
