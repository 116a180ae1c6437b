"""Symbol validation: run before any symbol becomes a partition key, a path or a SQL value."""

from __future__ import annotations

import re
from collections.abc import Iterable

from quant_assets.errors import InvalidSymbolError

SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{2,30}")


def is_valid_symbol(raw: object) -> bool:
    """True when `raw` is a string of 2-30 upper-case letters and digits (e.g. ``1000PEPEUSDT``)."""
    return isinstance(raw, str) and SYMBOL_PATTERN.fullmatch(raw) is not None


def checked_symbol(raw: object) -> str:
    """Return `raw` unchanged if it is a valid symbol; raise :class:`InvalidSymbolError` if not."""
    if not is_valid_symbol(raw):
        raise InvalidSymbolError(
            f"refusing symbol {raw!r}: expected 2-30 characters of A-Z and 0-9, e.g. BTCUSDT"
        )
    return raw  # type: ignore[return-value]


def split_valid(raw_symbols: Iterable[object]) -> tuple[list[str], list[str]]:
    """Split `raw_symbols` into (valid, rejected), each in input order; rejected ones as repr text."""
    valid: list[str] = []
    rejected: list[str] = []
    for raw in raw_symbols:
        if is_valid_symbol(raw):
            valid.append(raw)  # type: ignore[arg-type]
        else:
            rejected.append(raw if isinstance(raw, str) else repr(raw))
    return valid, rejected
