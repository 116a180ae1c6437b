"""Forward what the domain code logs to another logger, such as a Dagster run's ``context.log``.

The domain code logs through Python ``logging`` under the ``quant_assets`` tree and knows nothing
of Dagster. While a run executes, a :class:`RunLogForwarder` on that tree re-logs each record to the
run's log, from whichever thread it came, so retries, Retry-After holds, budget waits and a busy
catalog show in the run's event log. A forwarded record is marked (:func:`is_forwarded`), so a
terminal handler can leave it to the run's own console output instead of printing it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

FORWARDED_ATTR = "quant_assets_forwarded"  # set on a record once a run's log has it
SIMULATOR_LOGGER = "quant_assets.simulator"  # the test venue's own chatter is no run's business


def is_forwarded(record: logging.LogRecord) -> bool:
    """Whether a :class:`RunLogForwarder` has passed `record` to a run's log."""
    return bool(getattr(record, FORWARDED_ATTR, False))


def not_forwarded(record: logging.LogRecord) -> bool:
    """A filter for terminal handlers: keep the records no run's log has taken."""
    return not is_forwarded(record)


def _within(name: str, ancestors: Iterable[str]) -> bool:
    return any(a == "root" or name == a or name.startswith(f"{a}.") for a in ancestors)


class RunLogForwarder(logging.Handler):
    """Re-log records of one logger tree to `target` (thread-safe: ``Handler.handle`` holds a lock).

    `skip_loggers` names loggers someone else already forwards (Dagster's
    ``python_logs.managed_python_loggers``): their records, and their children's, are left alone so
    no line appears twice. Records of the simulator are never forwarded.
    """

    def __init__(
        self, target: logging.Logger, *, level: int = logging.INFO, skip_loggers: Iterable[str] = ()
    ) -> None:
        super().__init__(level=level)
        self.target = target
        self.skip_loggers = (*skip_loggers, SIMULATOR_LOGGER)
        self._logger: logging.Logger | None = None
        self._previous_level = logging.NOTSET

    def attach(self, logger: logging.Logger) -> None:
        """Listen to `logger` and its children, lowering its level to this handler's if needed."""
        self._logger, self._previous_level = logger, logger.level
        if logger.getEffectiveLevel() > self.level:
            logger.setLevel(self.level)
        logger.addHandler(self)

    def detach(self) -> None:
        """Stop listening; the logger's level is what it was before :meth:`attach`."""
        if self._logger is not None:
            self._logger.removeHandler(self)
            self._logger.setLevel(self._previous_level)
            self._logger = None

    def filter(self, record: logging.LogRecord) -> bool:
        return not _within(record.name, self.skip_loggers) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = f"{record.name}: {record.getMessage()}"
            if record.exc_info:
                message += "\n" + self.formatter_or_default().formatException(record.exc_info)
            self.target.log(record.levelno, message)
            setattr(record, FORWARDED_ATTR, True)
        except Exception:  # a log line must never fail the work that logged it
            self.handleError(record)

    def formatter_or_default(self) -> logging.Formatter:
        return self.formatter or logging.Formatter()
