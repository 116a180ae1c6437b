"""Typed errors. Each names what failed and, where it helps, what to do about it."""

from __future__ import annotations


class QuantAssetsError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidSymbolError(QuantAssetsError, ValueError):
    """A symbol from a payload or a user is not safe to use as a partition key, path or SQL value."""


class ConfigError(QuantAssetsError, ValueError):
    """A QT_* setting has a value that cannot work."""


class SourceError(QuantAssetsError):
    """A venue request failed for good (after the retries it deserved).

    Attributes name the venue (``binance``, ``coingecko``...), the endpoint path and the HTTP status
    (``None`` when no response arrived: timeout, refused connection, broken body).
    """

    def __init__(self, message: str, *, venue: str, endpoint: str, status: int | None = None) -> None:
        self.venue = venue
        self.endpoint = endpoint
        self.status = status
        where = f"{venue} {endpoint}" + (f" (HTTP {status})" if status is not None else "")
        super().__init__(f"{where}: {message}")


class RateLimitError(SourceError):
    """The venue answered 429 or 418 and the retries did not get through."""

    def __init__(
        self,
        message: str,
        *,
        venue: str,
        endpoint: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, venue=venue, endpoint=endpoint, status=status)


class UnknownSymbolError(SourceError):
    """The venue does not know the symbol (never listed, or delisted)."""


class StoreError(QuantAssetsError):
    """The lake or the catalog refused an operation (bad table name, bad partition keys...)."""


class SchemaMismatchError(QuantAssetsError):
    """Features computed under one schema were offered to something built for another."""
