"""One logging set-up for every command: ``--log-format text|json`` and the libraries' output.

``text`` (default) is the classic ``time LEVEL logger: message`` line. ``json`` writes one JSON
object per line (``ts`` ISO-8601 UTC, ``level``, ``logger``, ``msg``, any ``extra=`` fields of
the call, ``exc`` with the traceback), the shape log shippers (journald, Loki, Vector, ELK)
ingest without parsing rules. The formatter is the standard library's ``logging.Formatter``
with ``json.dumps``: no dependency is needed for that.

py-libp2p configures its own ``libp2p`` logger when it is imported (``propagate = False``, no
handler, so its warnings reached stderr through Python's last-resort handler, unformatted);
:func:`adopt_library_loggers` puts it and its children back under the root handler, keeping the
levels (``LIBP2P_DEBUG`` still selects them) and routes ``warnings.warn`` through logging too.
"""
from __future__ import annotations

import json
import logging
import sys
import time

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra`` fields are kept (non-JSON values as ``str``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: int = logging.WARNING, fmt: str = "text", stream=None) -> None:
    """Install the one root handler (replacing earlier ones) in format ``fmt``."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    adopt_library_loggers()


def adopt_library_loggers(prefixes: tuple[str, ...] = ("libp2p",)) -> None:
    """Make the loggers under ``prefixes`` propagate to the root handler, without their own
    handlers. Call again after importing a library that configures itself at import."""
    names = [n for n in list(logging.root.manager.loggerDict)
             if any(n == p or n.startswith(p + ".") for p in prefixes)]
    for name in set(names) | set(prefixes):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
