"""A PostgreSQL outage as a worker process sees it: one log line when the database goes away,
one when it is back, and procrastinate's complaints meanwhile (an error with a trace from each
of its loops, every few seconds) folded into them instead of flooding the log.

One judge decides the state (the worker's heartbeat): a late complaint from another part, say
a procrastinate pool that gives up after the database is back, cannot make the log flap."""

from __future__ import annotations

import logging
import time

import psycopg

log = logging.getLogger(__name__)


def one_line(error: BaseException) -> str:
    """The error's message on one line (psycopg's span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def connection_error(error: BaseException | None) -> BaseException | None:
    """`error`, or what caused it, where it says the database cannot be reached; else None."""
    for _ in range(10):
        if error is None or isinstance(error, psycopg.OperationalError | OSError):
            return error
        error = error.__cause__ or error.__context__
    return None


class Outage:
    """Whether this process has lost PostgreSQL; one log line per change of state."""

    def __init__(self, who: str) -> None:
        self.who = who
        self._since: float | None = None

    @property
    def away(self) -> bool:
        return self._since is not None

    def lost(self, error: BaseException) -> None:
        if self._since is None:
            self._since = time.monotonic()
            log.warning(
                "%s lost the connection to PostgreSQL (%s); carrying on", self.who, one_line(error)
            )

    def back(self) -> None:
        if self._since is not None:
            log.info(
                "%s: the connection to PostgreSQL is back after %.1fs",
                self.who,
                time.monotonic() - self._since,
            )
            self._since = None

    def fold(self, *loggers: str) -> None:
        """Keep those loggers' records about a lost connection out of the log (at DEBUG here
        instead): the heartbeat's lines say it."""
        for name in loggers:
            logging.getLogger(name).addFilter(self._filter)

    def _filter(self, record: logging.LogRecord) -> bool:
        error = connection_error(record.exc_info[1] if record.exc_info else None)
        if error is None:
            return True
        log.debug("%s: %s (%s)", record.name, record.getMessage(), one_line(error))
        return False
