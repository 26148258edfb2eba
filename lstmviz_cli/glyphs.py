"""How characters that do not print are shown, as one source for the page, figures and messages.

A space inside running text stays a space; a token that *is* a lone space, newline, tab or carriage
return is shown by a visible symbol, and any other control or bidi-override character as an escape
(``\\x1b``, ``\\u202e``), so user text can never reorder or hide what the page says.
"""

from __future__ import annotations

# Whitespace tokens and their visible symbols (Unicode "symbol for ..." characters).
WHITESPACE: dict[str, str] = {
    " ": "\u2423",   # ␣ open box: a token that is one space
    "\n": "\u21b5",  # ↵ downwards arrow with corner leftwards: newline
    "\t": "\u21e5",  # ⇥ rightwards arrow to bar: tab
    "\r": "\u240d",  # ␍ symbol for carriage return
}


def escape_char(ch: str) -> str:
    """``\\xNN`` for code points below 256, ``\\uNNNN`` above: how an invisible character is shown."""
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, limit: int | None = 40) -> str:
    """`text` with newlines, tabs and invisible characters (controls, bidi overrides) made visible.

    A lone space becomes "␣" so a one-character token is never blank; text longer than `limit`
    characters is shortened with "…" (None: never).
    """
    text = str(text)
    if text == " ":
        return WHITESPACE[" "]
    shown = "".join(
        WHITESPACE[ch] if ch in WHITESPACE and ch != " " else (ch if ch.isprintable() or ch == " " else escape_char(ch))
        for ch in text
    )
    return shown if limit is None or len(shown) <= limit else shown[: limit - 1] + "…"


def for_terminal(text: str, limit: int | None = None) -> str:
    """A line for the terminal made safe: no escape sequences, no newlines, nothing that reorders text.

    Every line the CLI prints that holds text from a checkpoint, an input or the user's model (a
    module name, a file name, an error message quoting them) goes through here. Shortened with "…"
    past `limit` characters (None: never; an error line is kept whole).
    """
    return visible(text, limit)


def display_token(token: str) -> str:
    """How one token is written in labels and tables: a whitespace token as its symbol, any
    control or bidi character escaped, never shortened."""
    if token in WHITESPACE:
        return WHITESPACE[token]
    return visible(token, limit=len(token) * 6 + 1)
