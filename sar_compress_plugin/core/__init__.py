"""The codec core: plain numpy (+ onnxruntime, zstandard, osgeo.gdal for raster I/O).

Never imports QGIS or torch, so the command line, batch engines and the QGIS plugin share one implementation.
"""
