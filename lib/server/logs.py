"""One log file per server, instead of MONAI Label's ``<app>/logs/app.log`` shared by every server of the app."""

from __future__ import annotations

import logging
import logging.handlers
import os


def _shared_file_handlers(app_dir: str) -> list[tuple[logging.Logger, logging.FileHandler]]:
    shared = os.path.realpath(os.path.join(app_dir, "logs", "app.log"))
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    return [
        (logger, handler)
        for logger in loggers
        for handler in logger.handlers
        if isinstance(handler, logging.FileHandler) and os.path.realpath(handler.baseFilename) == shared
    ]


def use_own_log(app_dir: str, path: str | None) -> None:
    """Move MONAI Label's file logging from the app's shared ``app.log`` to ``path`` (None: no file).

    The server logs to its own file; the processes it starts log to their output, which the server copies into
    its log.
    """
    handlers: dict[int, logging.Handler] = {}
    for logger, handler in _shared_file_handlers(app_dir):
        logger.removeHandler(handler)
        handler.close()
        if path is None:
            continue
        if id(handler.formatter) not in handlers:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            own = logging.handlers.RotatingFileHandler(path, maxBytes=10 * 2**20, backupCount=10, encoding="utf-8")
            own.setFormatter(handler.formatter)
            own.setLevel(handler.level)
            handlers[id(handler.formatter)] = own
        logger.addHandler(handlers[id(handler.formatter)])
    # uvicorn logs a request's unhandled error ("Exception in ASGI application") to its own logger, which MONAI
    # Label writes to the console only: the admin's GET /logs/ must show it too.
    server, own = logging.getLogger("uvicorn"), next(iter(handlers.values()), None)
    if own is not None and own not in server.handlers:
        server.addHandler(own)


class ShortRefusals(logging.Filter):
    """Start-up refusals as their message alone.

    uvicorn logs a failed start-up as the whole traceback of the error. For ``errors`` whose message says
    everything (a ``--conf`` value, the users file, a folder held by another server), the admin needs that
    message, not 60 lines of MONAI Label's and Starlette's frames. Other errors keep their traceback.
    """

    def __init__(self, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.prefixes = tuple(f"{error.__module__}.{error.__qualname__}: " for error in errors)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Traceback (most recent call last):"):
            last = text.rstrip().rsplit("\n", 1)[-1]
            for prefix in self.prefixes:
                if last.startswith(prefix):
                    record.msg, record.args = f"The server cannot start: {last[len(prefix) :]}", ()
                    record.exc_info, record.exc_text = None, None
        return True


def shorten_refusals(errors: tuple[type[BaseException], ...]) -> None:
    """Log a start-up that ``errors`` refuse as one line (:class:`ShortRefusals`) in uvicorn's log."""
    server = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ShortRefusals) for f in server.filters):
        server.addFilter(ShortRefusals(errors))
