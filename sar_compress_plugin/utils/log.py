"""One logging wrapper for the plugin (after qtribu's toolbelt/log_handler.py).

`PluginLogger.log` writes to QgsMessageLog under the plugin's tab and can push to the message bar. Library
code (core, tasks, processing) uses `logging.getLogger(__name__)`; `QgsMessageLogHandler`, installed on the
package logger by the plugin, forwards those records to the same tab.
"""

from __future__ import annotations

import logging

from qgis.core import Qgis, QgsMessageLog

from ..__about__ import LOG_TAG
from .settings import qgis_wording

PACKAGE_LOGGER = "sar_compress_plugin"

_LEVELS = {
    logging.DEBUG: Qgis.MessageLevel.Info,
    logging.INFO: Qgis.MessageLevel.Info,
    logging.WARNING: Qgis.MessageLevel.Warning,
    logging.ERROR: Qgis.MessageLevel.Critical,
    logging.CRITICAL: Qgis.MessageLevel.Critical,
}


def qgis_level(level: int) -> Qgis.MessageLevel:
    return _LEVELS.get(level, Qgis.MessageLevel.Info)


class QgsMessageLogHandler(logging.Handler):
    """Forwards Python log records of the package to QgsMessageLog (thread-safe on the QGIS side)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            QgsMessageLog.logMessage(self.format(record), LOG_TAG, qgis_level(record.levelno), notifyUser=False)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def install_log_handler() -> QgsMessageLogHandler:
    handler = QgsMessageLogHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    return handler


def remove_log_handler(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger(PACKAGE_LOGGER).removeHandler(handler)


class PluginLogger:
    """Message log + optional message bar, in QGIS wording (utils.settings.qgis_wording). `iface` may be None
    (Processing, qgis_process)."""

    def __init__(self, iface=None):
        self.iface = iface

    def log(self, message: str, level: Qgis.MessageLevel = Qgis.MessageLevel.Info, push: bool = False,
            duration: int | None = None, title: str = LOG_TAG) -> None:
        message = qgis_wording(message)
        QgsMessageLog.logMessage(message, LOG_TAG, level, notifyUser=push)
        if push and self.iface is not None:
            bar = self.iface.messageBar()
            if duration is None:
                duration = 0 if level == Qgis.MessageLevel.Critical else 10
            bar.pushMessage(title, message, level, duration)

    def info(self, message: str, push: bool = False) -> None:
        self.log(message, Qgis.MessageLevel.Info, push)

    def success(self, message: str, push: bool = True) -> None:
        self.log(message, Qgis.MessageLevel.Success, push)

    def warning(self, message: str, push: bool = True) -> None:
        self.log(message, Qgis.MessageLevel.Warning, push)

    def error(self, message: str, push: bool = True) -> None:
        self.log(message, Qgis.MessageLevel.Critical, push)
