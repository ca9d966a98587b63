"""Optional bridges from slices to engines' own collections and helpers.

Each submodule imports its engine (``dataplug.integrations.dask`` imports Dask); this package and
``import dataplug`` import none. Install them with the extras: ``pip install "dataplug[dask]"``,
``"dataplug[lithops]"``, ``"dataplug[ray]"``. Plain maps over slices or byte ranges need no integration:
pass the engine as ``executor=`` to :func:`dataplug.executors.map_ordered` or ``CloudObject.preprocess``.
"""
