"""ONNX export of trained sar-compress models into bundles the numpy codec (and the QGIS plugin) runs."""
