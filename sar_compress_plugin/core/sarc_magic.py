"""The bytes every .sarc file starts with (docs/format.md), in a module of their own, importing nothing: the
container (core/container.py, which needs zstandard) writes and checks them, and the raster reader tells a
.sarc given as a raster by them in processes that never load the container's packages."""

MAGIC = b"SARC\x89\r\n\x1a"
