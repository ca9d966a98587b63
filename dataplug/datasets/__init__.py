"""Datasets: many objects of one format (a sequencing run, a survey's tiles, an archive of CSV parts) opened,
indexed and partitioned as one. See :func:`open_dataset` and :class:`Dataset`."""

from dataplug.datasets.dataset import SMALL_OBJECT_BYTES, Dataset, DatasetAttributes, open_dataset
from dataplug.datasets.listing import Listed, Listing, list_objects

__all__ = ["SMALL_OBJECT_BYTES", "Dataset", "DatasetAttributes", "Listed", "Listing", "list_objects", "open_dataset"]
