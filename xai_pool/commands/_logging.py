"""Where the library's log messages go when it runs as ``xai-pool``.

The library logs through ``logging.getLogger("xai_pool")`` and its children and never
configures a handler (an application decides). The commands call :func:`configure_logging`:
one handler on stderr that prints the bare message, written through ``tqdm.write`` so that a
line logged while a progress bar runs does not break the bar.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


class _TqdmHandler(logging.Handler):
    """Writes to the current ``sys.stderr``, clearing and redrawing the active tqdm bars around each line.

    ``sys.stderr`` is looked up at each message, not when the handler is made, so that a
    redirected stderr (``contextlib.redirect_stderr``, pytest's capture) gets the messages.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise into the caller; handleError reports it
            self.handleError(record)


def configure_logging(quiet: bool = False) -> logging.Logger:
    """Show xai_pool's messages on stderr: INFO and above, or only warnings when ``quiet``.

    Calling it again (several commands in one process, as in the tests) changes the level and
    adds no second handler.

    Args:
        quiet: show only warnings and errors.

    Returns:
        The ``xai_pool`` logger.
    """
    logger = logging.getLogger("xai_pool")
    if not any(isinstance(handler, _TqdmHandler) for handler in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    return logger
