"""QGIS-side helpers: logging to the message log and bar, settings, dependency check."""
