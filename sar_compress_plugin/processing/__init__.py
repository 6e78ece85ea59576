"""Processing provider: the codec in the toolbox, in models and through processing.run / qgis_process."""
