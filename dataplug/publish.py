"""Publish an object's index beside a public dataset, so that everyone reads the dataset without indexing it.

A data owner indexes the object once under the URL users will read (``https://host/data/x.fastq.gz``) and
writes the index to a folder served next to it; users then point ``index_location`` at that folder's
public URL. The folder holds the usual sidecar (its manifest names every file, so nothing is listed) and a
``README.txt`` that says what it is and how to use it.

A dataset (a glob or prefix of many objects, :func:`publish_dataset`) is published the same way: its whole
index (the dataset manifest, the packs of its small objects' indexes, a folder per large object) goes to the
folder, and users open the same glob with ``open_dataset(glob, index_location=<public URL>)``, read-only.
"""

from __future__ import annotations

import time
from typing import Any

from dataplug import __version__
from dataplug.cloudobject import CloudObject
from dataplug.datasets import Dataset, open_dataset
from dataplug.errors import IndexLocationNotWritableError
from dataplug.format import DataFormat
from dataplug.sidecar import INDEX_SUFFIX
from dataplug.storage import StorageObject

README_NAME = "README.txt"


def index_folder(url: str, dest: str) -> str:
    """The object's own index folder under ``dest``: ``dest`` itself when it ends in ``.dataplug``, else
    ``<dest>/<object name>.dataplug``."""
    dest = dest.rstrip("/")
    return dest if dest.endswith(INDEX_SUFFIX) else f"{dest}/{url.rstrip('/').rsplit('/', 1)[-1]}{INDEX_SUFFIX}"


def publish(
    url: str,
    dest: str,
    data_format: type[DataFormat] | str | None = "auto",
    storage_options: dict[str, Any] | None = None,
    dest_storage_options: dict[str, Any] | None = None,
    public_dest: str | None = None,
    **options: Any,
) -> CloudObject:
    """Index ``url`` (the URL users will read) into :func:`index_folder` of ``dest`` and add a README.txt
    (replacing only one that dataplug wrote for this object: its first line names the object).

    ``public_dest`` is the URL at which ``dest`` will be served (default ``dest``), for the README's usage
    lines. ``options`` are the format's preprocessing options. Returns the indexed object.
    """
    folder = index_folder(url, dest)
    co = CloudObject.from_url(data_format, url, storage_options, folder, dest_storage_options)
    readme = StorageObject(folder, co.index_location.storage_options).child(README_NAME)
    if readme.exists() and not readme.read_all().startswith(_title(co).encode()):
        raise IndexLocationNotWritableError(readme.url, "a README.txt that dataplug did not write is already there; it is left as it is")
    co.preprocess(force=True, **options)
    readme.write_bytes(_readme(co, index_folder(url, public_dest) if public_dest else folder).encode())
    return co


def publish_dataset(
    urls: str | list[str],
    dest: str,
    data_format: type[DataFormat] | str | None = "auto",
    storage_options: dict[str, Any] | None = None,
    dest_storage_options: dict[str, Any] | None = None,
    public_dest: str | None = None,
    executor: Any = None,
    **options: Any,
) -> Dataset:
    """Index the dataset ``urls`` (a glob, a prefix ending in ``/``, or a list: as users will name it) into
    the folder ``dest`` and add a README.txt there (replacing only one dataplug wrote for this dataset).

    Every object is indexed anew (``force``), as a map over objects on ``executor``. ``public_dest`` is the URL
    at which ``dest`` will be served (default ``dest``), for the README. Returns the indexed dataset.
    """
    folder = dest.rstrip("/")
    ds = open_dataset(urls, storage_options, format=data_format, index_location=folder, index_storage_options=dest_storage_options, preprocess=False)
    readme = ds.index_location.child(README_NAME)
    title = _dataset_title(ds.url)
    if readme.exists() and not readme.read_all().startswith(title.encode()):
        raise IndexLocationNotWritableError(readme.url, "a README.txt that dataplug did not write is already there; it is left as it is")
    ds.preprocess(executor, force=True, **options)
    readme.write_bytes(_dataset_readme(ds, (public_dest or dest).rstrip("/")).encode())
    return ds


def _dataset_title(pattern: str) -> str:
    return f"dataplug index of the dataset {pattern}\n"


def _dataset_readme(ds: Dataset, public_folder: str) -> str:
    a = ds.attributes
    records = f", {a.records} records" if a.records is not None else ""
    return f"""{_dataset_title(ds.url)}
This folder is a dataplug dataset index (https://pypi.org/project/dataplug/): the {ds.format.name} indexes of
the {a.objects} objects ({a.bytes} bytes{records}) the name above matched, written by dataplug {__version__}
on {time.strftime("%Y-%m-%d", time.gmtime())}. Its dataset manifest (*.dataset.json) lists every object with
its size and identity and names where its index is: small objects' indexes packed in a few shared files,
large objects' in folders of their own. It lets any number of workers read the dataset in parallel slices
with range requests, without downloading or indexing it first.

Use it (read-only; nothing is written here), naming the objects exactly as above:

    import dataplug
    ds = dataplug.open_dataset("{ds.url}", index_location="{public_folder}")
    slices = ds.partition("partition_num_chunks", 64)

or on the command line:

    dataplug partition '{ds.url}' partition_num_chunks 64 --index-location {public_folder}

An object added or changed since has no index here: dataplug then refuses the dataset and says to index it
yourself with index_location='<a folder you can write>'.
"""


def _title(co: CloudObject) -> str:
    """The README's first line, by which a later publish knows the file as its own."""
    return f"dataplug index of {co.url}\n"


def _example_strategy(co: CloudObject) -> str:
    """A strategy taking a slice count, for the README's example: ``partition_num_chunks``, which every
    built-in format has (a plugin format's first strategy otherwise)."""
    names = sorted(co.format.all_strategies())
    return "partition_num_chunks" if "partition_num_chunks" in names else names[0] if names else ""


def _readme(co: CloudObject, public_folder: str) -> str:
    info = co.index().object_info
    strategy = _example_strategy(co)
    return f"""{_title(co)}
This folder is a dataplug sidecar index (https://pypi.org/project/dataplug/): a {co.format.name} index of
the object above, written by dataplug {__version__} on {time.strftime("%Y-%m-%d", time.gmtime())} for the
object of {info.size} bytes with identity {info.identity}. It lets any number of workers read the object in
parallel slices with range requests, without downloading or indexing it first. Its manifest.json holds
the small numeric tables (.npy bytes, no pickles) and blobs inline and names any larger ones (.npy, .bin),
each with its SHA-256.

Use it (read-only; nothing is written here):

    import dataplug
    co = dataplug.open("{co.url}", index_location="{public_folder}")
    slices = co.partition("{strategy}", 64)

or on the command line:

    dataplug partition {co.url} {strategy} 64 --index-location {public_folder}

If the object changes, this index no longer fits it: dataplug then refuses it (StaleIndexError) and you
can index the object yourself with index_location='<a folder you can write>'.
"""
