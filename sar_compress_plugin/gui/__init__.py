"""Dialogs and the Browser integration (Qt only through qgis.PyQt)."""
