"""Archive-scale batches: the core's compress / reconstruct mapped over many scenes on dask.distributed.

This layer may import dask; `core/` must not, so the plugin and the single-file CLIs never need it.
"""
