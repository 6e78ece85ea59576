"""QGIS entry point. Only `classFactory` lives here, and it imports the plugin lazily, so that importing the
package (for example the codec core from the command line) never needs QGIS."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .plugin import SarCompressPlugin
    from .utils.deps import add_plugin_site_dir

    add_plugin_site_dir()  # packages installed by the dependency dialog in an earlier session

    return SarCompressPlugin(iface)
