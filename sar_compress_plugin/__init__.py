"""QGIS entry point. Only `classFactory` lives here, and it imports the plugin lazily, so that importing the
package (for example the codec core from the command line) never needs QGIS."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .plugin import SarCompressPlugin

    return SarCompressPlugin(iface)
