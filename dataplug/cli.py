"""Command line: ``dataplug index | info | partition | read | plot | publish | serve | formats``, thin wrappers
over the library.

Mistakes print one line, ``dataplug: <message>``, and exit 2; ``read`` writes each format's own
serialisation, so it fits in a pipeline (``| head`` closes it quietly). ``-o`` is always the output file;
preprocessing options are ``-O KEY=VALUE`` (``--option``) in every subcommand that may index.

A URL with a glob character (``*``, ``?``, ``[``) or a trailing ``/`` names a dataset, many objects of one
format (:func:`dataplug.datasets.open_dataset`); so do several URLs given to ``index`` or ``info``.
``partition`` and ``read`` then cut the dataset as ``Dataset.partition`` does, and ``publish`` writes the
dataset's index.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, BinaryIO

from dataplug import __version__
from dataplug.cloudobject import CloudObject
from dataplug.codecs import get_codec
from dataplug.datasets import Dataset, open_dataset
from dataplug.datasets.listing import glob_match
from dataplug.datasets.slices import GroupSlice
from dataplug.errors import CorruptIndexError, DataplugError, IndexMissingError, StaleIndexError, StrategyArgumentError
from dataplug.executors import default_workers, ordered_ahead, progress_bar
from dataplug.format import available_formats, get_format

#: Each subcommand's examples, shown by its ``--help`` (the first of each also by ``dataplug --help``).
EXAMPLES = {
    "index": [
        ("dataplug index s3://bucket/reads.fastq.gz", "detect the format, build the index"),
        ("dataplug index data.csv --format CSV -O delimiter=';' -O encoding=latin-1", ""),
        ("dataplug index data.csv -O header=false", "other options than the index's: rebuilt"),
        ("dataplug index 's3://bucket/run42/*.fastq.gz'", "a dataset: only new or changed objects are read"),
    ],
    "info": [("dataplug info s3://bucket/reads.fastq.gz", ""), ("dataplug info s3://bucket/sales/", "a dataset: every object under the prefix")],
    "partition": [
        ("dataplug partition s3://bucket/reads.fastq.gz partition_reads_batches 8", ""),
        ("dataplug partition 's3://bucket/sales/*.csv.gz' partition_num_chunks 64", "slices across objects, balanced by records"),
        ("dataplug partition calls.vcf.gz partition_regions chr1:1-20000,chrX:1-5000", ""),
        ("dataplug partition calls.vcf.gz partition_regions '[\"chr1:1-20000\", \"chrX\"]'", "the same as a JSON list"),
    ],
    "read": [
        ("dataplug read calls.vcf.gz partition_num_chunks 16 > all.vcf", "one header, then every slice"),
        ("dataplug read data.csv partition_num_chunks 4 -o 'part-{}.csv'", "one file per slice"),
        ("dataplug read tile.laz square_split_strategy 16 --slice 5 -o cell5.las", ""),
        ("dataplug read scene.tif partition_num_chunks 16 --slice 0 -o tile0.tif", "a GeoTIFF"),
        ("dataplug read 's3://bucket/sales/*.csv.gz' partition_num_chunks 8 > sales.csv", "a dataset as one CSV"),
    ],
    "plot": [("dataplug plot tile.laz square_split_strategy 16 -o cells.png", "")],
    "publish": [
        ("dataplug publish https://host/data/x.fastq.gz s3://host-bucket/index/ --public-dest https://host/index/", ""),
        ("dataplug read https://host/data/x.fastq.gz partition_reads_batches 8 --index-location https://host/index/x.fastq.gz.dataplug/", ""),
        ("dataplug publish 's3://open-data/run42/*.fastq.gz' s3://host-bucket/run42-index/ --public-dest https://host/run42-index/ -s anon=true", "a dataset"),
    ],
    "serve": [
        ("dataplug serve s3://bucket/genomes/ --port 8080", "htsget over the BAM and VCF objects under the prefix"),
        ("dataplug serve /data/genomes --host 0.0.0.0 --index-location s3://bucket/indexes/", ""),
    ],
    "formats": [("dataplug formats", "every format, its strategies and -O options"), ("dataplug formats vcf", "one format")],
}


def _examples(names: list[str], first_only: bool = False) -> str:
    lines = ["examples:"]
    for name in names:
        for command, note in EXAMPLES[name][:1] if first_only else EXAMPLES[name]:
            lines.append(f"  {command}" + (f"   {note}" if note else ""))
    return "\n".join(lines) + "\n"


def _value(text: str) -> Any:
    """``8`` -> 8, ``true`` -> True, ``null`` -> None, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise StrategyArgumentError(None, f"{what} {pair!r} is not KEY=VALUE")
        out[key] = _value(value)
    return out


def is_dataset(urls: str | list[str]) -> bool:
    """Whether the command line names a dataset: several URLs, a glob (``*``, ``?``, ``[``) or a prefix
    ending in ``/``."""
    if isinstance(urls, list):
        return len(urls) > 1 or is_dataset(urls[0])
    return glob_match(urls) is not None or urls.endswith("/")


def _urls(args: argparse.Namespace) -> str | list[str]:
    """The URL argument(s) as :func:`open_dataset` takes them: one pattern, or the list given."""
    urls = args.url if isinstance(args.url, list) else [args.url]
    return urls if len(urls) > 1 else urls[0]


def _object(args: argparse.Namespace) -> CloudObject:
    return CloudObject.from_url(args.format, _urls(args), _pairs(args.storage_option, "storage option"), args.index_location)


def _dataset(args: argparse.Namespace) -> Dataset:
    """The dataset the URL(s) name, its fresh indexes loaded, nothing indexed yet."""
    return open_dataset(_urls(args), _pairs(args.storage_option, "storage option"), format=args.format, index_location=args.index_location, preprocess=False)


def _arguments(raw: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Strategy arguments from the command line: values, and ``KEY=VALUE`` keywords."""
    positional = [_value(a) for a in raw if not _is_keyword(a)]
    keywords = {k: _value(v) for k, _, v in (a.partition("=") for a in raw if _is_keyword(a))}
    return positional, keywords


def _is_keyword(arg: str) -> bool:
    key, sep, _ = arg.partition("=")
    return bool(sep) and key.isidentifier()


REGIONS_HELP = "partition_regions takes chr1:1-2,chrX:1-5 or a JSON list '[\"chr1:1-2\", \"chrX\"]'"
#: A comma-separated piece that continues a number (``1,000``) rather than starting a region.
_THOUSANDS = re.compile(r"[0-9]{3}(?:-|$)")


def _regions(url: str, text: str) -> list[str]:
    """Regions from ``chr1:1-2,chrX:1-5`` or a JSON list. Commas inside positions (``chr1:1,000-2,000``)
    are thousands separators, as samtools reads them. Anything else that does not parse is an error, so a
    mistyped list never becomes one region that matches nothing."""
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StrategyArgumentError(url, f"regions {text!r} are not a JSON list ({exc.msg} at character {exc.pos}); {REGIONS_HELP}") from None
        if not isinstance(value, list) or not value or not all(isinstance(r, str) and r.strip() for r in value):
            raise StrategyArgumentError(url, f"regions {text!r} are not a non-empty list of region strings; {REGIONS_HELP}")
        return [r.strip() for r in value]
    regions: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            raise StrategyArgumentError(url, f"regions {text!r} hold an empty region (two commas, or one at an end); {REGIONS_HELP}")
        if regions and ":" in regions[-1] and regions[-1][-1].isdigit() and _THOUSANDS.match(piece):
            regions[-1] += "," + piece
        else:
            regions.append(piece)
    return regions


def _strategy_arguments(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The strategy's arguments; for ``partition_regions``, every argument is a list of regions (joined)."""
    if args.strategy != "partition_regions":
        return _arguments(args.args)
    texts = [a[len("regions=") :] if a.startswith("regions=") else a for a in args.args]
    if not texts:
        raise StrategyArgumentError(args.url, f"partition_regions needs regions: {REGIONS_HELP}")
    return [[r for text in texts for r in _regions(args.url, text)]], {}


def _slices(args: argparse.Namespace) -> tuple[CloudObject | Dataset, list[Any]]:
    """The object (or dataset) and the strategy's slices. With ``-O`` options the index is checked against
    them first (rebuilt when it was built with others); without, the partition is tried first and the object
    indexed only when its index is missing, stale or corrupt (a dataset: its objects without a fresh one)."""
    if is_dataset(args.url):
        return _dataset_slices(args)
    co = _object(args)
    positional, keywords = _strategy_arguments(args)
    options = _pairs(args.option, "option")
    if options:
        co.preprocess(progress=getattr(args, "progress", None), **options)
        if co.built_index:
            print(f"dataplug: indexed {co.url} as {co.format.name} with {_options_text(options)}", file=sys.stderr)
        return co, co.partition(args.strategy, *positional, **keywords)
    try:
        return co, co.partition(args.strategy, *positional, **keywords)
    except (IndexMissingError, StaleIndexError, CorruptIndexError):
        if co.published:
            raise
    print(f"dataplug: {co.url} has no fresh {co.format.name} index yet: indexing it first (what `dataplug index` does)", file=sys.stderr)
    co.preprocess(progress=getattr(args, "progress", None))
    return co, co.partition(args.strategy, *positional, **keywords)


def _dataset_slices(args: argparse.Namespace) -> tuple[Dataset, list[Any]]:
    ds = _dataset(args)
    positional, keywords = _strategy_arguments(args)
    options = _pairs(args.option, "option")
    if options or not _all_indexed(ds):
        ds.preprocess(progress=getattr(args, "progress", None), **options)
        if ds.indexed:
            print(f"dataplug: indexed {ds.indexed} of the {len(ds)} objects of {ds.url} first (what `dataplug index` does)", file=sys.stderr)
    return ds, ds.partition(args.strategy, *positional, **keywords)


def _all_indexed(ds: Dataset) -> bool:
    """Whether every object of the dataset has a fresh index loaded (no request: the listing told)."""
    try:
        return len(ds.objects) == len(ds)
    except IndexMissingError:
        return False


def _options_text(options: dict[str, Any]) -> str:
    return " ".join(f"-O {key}={json.dumps(value) if not isinstance(value, str) else value}" for key, value in options.items())


def _plain(value: Any) -> Any:
    """A window or bounds as JSON: tuples become lists."""
    return list(value) if isinstance(value, tuple) else value


def _describe(s: Any, count: bool = False) -> dict[str, Any]:
    """A slice as JSON: its number, records (``None`` where only a read tells, unless ``count``), byte range,
    window and bounds (where it has them) and the plain fields it carries."""
    out: dict[str, Any] = {"slice": s.number, "records": s.num_records if count else s.known_num_records, "byte_range": list(s.byte_range() or ()) or None}
    if isinstance(s, GroupSlice):  # a dataset's group of whole objects
        out["objects"] = list(s.urls)
        return out
    for key in ("window", "bounds"):
        value = getattr(s, key, None)
        if value is not None:
            out[key] = _plain(value)
    for key, value in vars(s).items():
        if not key.startswith("_") and key not in ("obj", "object_info", "number", "window", "bounds") and _is_plain(value):
            out[key] = _plain(value)
    return out


def _is_plain(value: Any) -> bool:
    """A number, string, bool or None, or a tuple of them (a VCF slice's region)."""
    if isinstance(value, tuple):
        return all(_is_plain(v) for v in value)
    return isinstance(value, (int, float, str, bool, type(None)))


def _table(rows: list[list[str]], numbers_right: bool = True) -> None:
    """Aligned columns (numbers to the right when ``numbers_right``)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.rjust(w) if numbers_right and c.replace(",", "").isdigit() else c.ljust(w) for c, w in zip(row, widths)]
        print("  ".join(cells).rstrip())


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else format(x, ".10g")


def _cmd_index(args: argparse.Namespace) -> None:
    if is_dataset(args.url):
        _index_dataset(args)
        return
    t0 = time.perf_counter()
    co = _object(args).preprocess(force=args.force, progress=args.progress, **_pairs(args.option, "option"))
    built = co.built_index
    facts = {
        "url": co.url,
        "format": co.format.name,
        "built": built,
        "seconds": round(time.perf_counter() - t0, 3),
        "index": co.index_location.url,
        "index_bytes": co.index().nbytes(),
    }
    if args.json:
        print(json.dumps(facts))
    elif built:
        print(f"indexed {co.url} as {co.format.name} in {facts['seconds']:.2f} s: {facts['index_bytes']:,} bytes of tables at {co.index_location.url}")
    else:
        print(
            f"reused the fresh {co.format.name} index of {co.url} (built with the same options; nothing rebuilt, --force rebuilds it): "
            f"{facts['index_bytes']:,} bytes of tables at {co.index_location.url}"
        )


def _index_dataset(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    ds = _dataset(args).preprocess(force=args.force, progress=args.progress, **_pairs(args.option, "option"))
    facts = {
        "url": ds.url,
        "format": ds.format.name,
        "objects": len(ds),
        "indexed": ds.indexed,
        "seconds": round(time.perf_counter() - t0, 3),
        "index": ds.index_location.url,
    }
    if args.json:
        print(json.dumps(facts))
        return
    fresh = len(ds) - ds.indexed
    print(
        f"indexed {ds.indexed} of the {len(ds)} {ds.format.name} objects of {ds.url} in {facts['seconds']:.2f} s"
        + (f" ({fresh} had a fresh index)" if fresh else "")
        + f"; dataset index at {ds.index_location.url}"
    )


def _info_dataset(args: argparse.Namespace) -> None:
    ds = _dataset(args)
    a = ds.attributes
    per_object = [{"url": co.url, "size": co.index().object_info.size, "attributes": asdict(attributes)} for co, attributes in zip(ds.objects, a.per_object)]
    totals = {"objects": a.objects, "bytes": a.bytes, "records": a.records, "bounds": a.bounds}
    if args.json:
        print(json.dumps({"url": ds.url, "format": ds.format.name, "index": ds.index_location.url, **totals, "per_object": per_object}, indent=1))
        return
    rows = [["url", ds.url], ["format", ds.format.name], ["index", ds.index_location.url]]
    rows += [[key, "-" if value is None else f"{value:,}" if isinstance(value, int) else _short(value)] for key, value in totals.items()]
    shown = ", ".join(o["url"].rsplit("/", 1)[-1] for o in per_object[:3]) + (f", ... ({len(per_object) - 3} more)" if len(per_object) > 3 else "")
    rows.append(["objects", shown])
    rows.append(["strategies", ", ".join(sorted(ds.format.all_strategies()))])
    _table(rows, numbers_right=False)


def _cmd_info(args: argparse.Namespace) -> None:
    if is_dataset(args.url):
        _info_dataset(args)
        return
    co = _object(args)
    attributes = asdict(co.attributes)
    detected = co.detection.describe() if co.detection else None
    if args.json:
        print(json.dumps({"url": co.url, "format": co.format.name, "detected": detected, "index": co.index_location.url, "attributes": attributes}, indent=1))
        return
    rows = [["url", co.url], ["format", co.format.name + (f"  (detected: {detected})" if detected else "")], ["index", co.index_location.url]]
    rows += [[key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else _short(value)] for key, value in attributes.items()]
    rows.append(["strategies", ", ".join(sorted(co.format.all_strategies()))])
    _table(rows, numbers_right=False)


def _cmd_partition(args: argparse.Namespace) -> None:
    co, slices = _slices(args)
    described = [_describe(s, args.count) for s in slices]
    if args.json:
        for d in described:
            print(json.dumps(d))
        return
    dataset = isinstance(co, Dataset)
    unit = "decoded bytes" if any(_stream_compressed(o) for o in (co.objects if dataset else [co])) else "bytes"
    extra = [key for key in ("window", "bounds") if any(key in d for d in described)]
    rows = [["slice", "records", unit, *extra, *(["object"] if dataset else [])]]
    for d, s in zip(described, slices):
        span = d["byte_range"]
        row = [str(d["slice"]), "?" if d["records"] is None else f"{d['records']:,}", f"[{span[0]:,}, {span[1]:,})" if span else "-"]
        row += ["(" + ", ".join(_number(x) for x in d[key]) + ")" if d.get(key) is not None else "-" for key in extra]
        if dataset:
            row.append(_objects_text(d.get("objects") or [s.url]))
        rows.append(row)
    _table(rows)
    known = [d["records"] for d in described if d["records"] is not None]
    total = f", {sum(known):,} records" if len(known) == len(described) else "; '?': known once read (--count counts them)"
    print(f"{len(slices)} slices of {co.url}{total}", file=sys.stderr)


def _objects_text(urls: list[str]) -> str:
    """The object a dataset's slice reads (its name), or the first and last of a group."""
    names = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls]
    return names[0] if len(names) == 1 else f"{len(names)} objects: {names[0]} .. {names[-1]}"


def _stream_compressed(co: CloudObject) -> bool:
    """Whether byte ranges are of a codec's decoded stream (gzip, BGZF, zstd, bzip2), not of the object's
    bytes (a GeoTIFF's or LAZ's own compression is inside the format)."""
    compression = getattr(co.attributes, "compression", None)
    if compression in (None, "none"):
        return False
    try:
        get_codec(compression)
    except ValueError:
        return False
    return True


def _dumped(s: Any) -> bytes:
    buf = io.BytesIO()
    s.dump(buf)
    return buf.getvalue()


def _header(s: Any) -> bytes:
    """The header a slice's ``dump`` writes before its records (CSV, VCF), b"" for formats without one."""
    header = getattr(s, "header", None)
    if not isinstance(header, str):
        return b""
    return header.encode(getattr(getattr(s, "dialect", None), "encoding", None) or "utf-8")


def _records_only(s: Any) -> bytes:
    """A slice's dump without the header it starts with: what follows the first slice in one output."""
    data, header = _dumped(s), _header(s)
    if not data.startswith(header):
        raise DataplugError(s.url, f"slice {s.number}'s dump does not start with the object's header, so slices cannot be joined into one file; write one file per slice with -o 'part-{{}}'")
    return data[len(header) :]


def _separate_files(s: Any) -> bool:
    """Slices that are files of their own and never join into one stream (binary formats, imzML's pairs)."""
    return bool(s.binary_output) or hasattr(s, "dump_to")


def _cmd_read(args: argparse.Namespace) -> None:
    co, slices = _slices(args)
    if args.slice is not None:
        if not 0 <= args.slice < len(slices):
            raise StrategyArgumentError(co.url, f"--slice {args.slice} is not one of the {len(slices)} slices (0..{len(slices) - 1})")
        slices = [slices[args.slice]]
    separate = any(_separate_files(s) for s in slices)
    paired = any(hasattr(s, "dump_to") for s in slices)
    if args.output and "{}" in args.output:
        for s in slices:
            try:
                _write_one(s, args.output.replace("{}", str(s.number)))
            except DataplugError as exc:
                if s.num_records != 0:
                    raise
                print(f"dataplug: no file for slice {s.number}: {exc.cause}", file=sys.stderr)  # an empty GeoTIFF or imzML cannot be written
        return
    if paired and not args.output:
        raise StrategyArgumentError(co.url, f"a {co.format.name} slice is two files (.imzML and .ibd): write it with --slice N -o FILE.imzML, or every slice with -o 'part-{{}}.imzML'")
    if args.output and separate:
        if len(slices) > 1:
            raise StrategyArgumentError(co.url, f"{co.format.name} slices are separate files: pick one with --slice N, or write each with -o 'cell-{{}}{os.path.splitext(args.output)[1]}'")
        _write_one(slices[0], args.output)
        return
    if separate and not args.output and sys.stdout.isatty():
        raise StrategyArgumentError(co.url, f"{co.format.name} slices are binary: write one to a file with -o FILE (or pipe the output)")
    if args.output:
        with open(args.output, "wb") as fp:
            _stream(slices, fp, args)
    else:
        _stream(slices, sys.stdout.buffer, args)


def _write_one(s: Any, path: str) -> None:
    """One slice as one file (imzML: ``path`` names the ``.imzML``, its ``.ibd`` is written beside it)."""
    dump_to = getattr(s, "dump_to", None)
    if dump_to is not None:
        dump_to(path)
        return
    to_file = getattr(s, "to_file", None)
    if s.binary_output and to_file is not None:
        to_file(path)  # e.g. laspy picks LAS or LAZ from the extension
        return
    try:
        with open(path, "wb") as fp:
            s.dump(fp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)  # no partial file left behind
        raise


def _stream(slices: list[Any], fp: BinaryIO, args: argparse.Namespace) -> None:
    """Dump the slices in order as one file: the first slice whole, the others without the header it
    already wrote (CSV, VCF), reading a few ahead on threads; memory holds about 2 x workers slices."""
    workers = args.workers or default_workers()
    parts = [(s, k == 0) for k, s in enumerate(slices)]
    with ThreadPoolExecutor(workers) as pool, progress_bar(len(slices), "slices", args.progress if len(slices) > 1 else False, unit="slice") as bar:
        for data in ordered_ahead(_part, parts, pool, 2 * workers):
            fp.write(data)
            bar.update(1)
        fp.flush()


def _part(part: tuple[Any, bool]) -> bytes:
    s, first = part
    return _dumped(s) if first else _records_only(s)


def _cmd_publish(args: argparse.Namespace) -> None:
    from dataplug.publish import README_NAME, index_folder, publish, publish_dataset

    if is_dataset(args.url):
        ds = publish_dataset(
            args.url,
            args.dest,
            args.format,
            _pairs(args.storage_option, "storage option"),
            _pairs(args.dest_storage_option, "storage option") or None,
            args.public_dest,
            **_pairs(args.option, "option"),
        )
        public = (args.public_dest or args.dest).rstrip("/")
        print(f"published the {ds.format.name} index of the {len(ds)} objects of {ds.url} to {ds.index_location.url} (with {README_NAME}); users read it with")
        print(f"  dataplug.open_dataset({ds.url!r}, index_location={public!r})")
        return

    co = publish(
        args.url,
        args.dest,
        args.format,
        _pairs(args.storage_option, "storage option"),
        _pairs(args.dest_storage_option, "storage option") or None,
        args.public_dest,
        **_pairs(args.option, "option"),
    )
    public = index_folder(args.url, args.public_dest or args.dest)
    print(f"published the {co.format.name} index of {co.url} to {index_folder(args.url, args.dest)} (with {README_NAME}); users read it with")
    print(f"  dataplug.open({co.url!r}, index_location={public!r})")


def _cmd_serve(args: argparse.Namespace) -> None:
    from dataplug.htsget.server import serve

    serve(
        args.root,
        host=args.host,
        port=args.port,
        storage_options=_pairs(args.storage_option, "storage option"),
        index_location=args.index_location,
    )


def _cmd_plot(args: argparse.Namespace) -> None:
    if is_dataset(args.url):
        raise StrategyArgumentError(args.url, "plot draws one object's partition: name one object of the dataset")
    co, slices = _slices(args)
    path = co.plot_partition(slices, args.output)
    print(f"wrote {path} ({len(slices)} slices of {co.url})")


def _cmd_formats(args: argparse.Namespace) -> None:
    names = available_formats()
    if args.name is not None:
        fmt = get_format(args.name)
        names = [fmt.name]
    print(_catalog(names), end="")


def _catalog(names: list[str]) -> str:
    """The formats dataplug finds, with their strategies and preprocessing options."""
    lines = ["formats (--format NAME, any case; the default 'auto' detects it from the first bytes):"]
    for name in names:
        try:
            fmt = get_format(name)
        except ImportError as exc:
            lines.append(f"  {name}: needs an extra ({exc.name} is not installed)")
            continue
        summary = " ".join((fmt.__doc__ or "").split()).split(". ")[0].rstrip(".")
        lines.append(f"  {name}: {summary}")
        lines.append(f"    strategies: {', '.join(sorted(fmt.all_strategies()))}")
        for option, help_text in sorted(fmt.all_options().items()):
            lines.append(f"    -O {option}=...  {help_text}")
    return "\n".join(lines) + "\n"


class _NotAnOutput(argparse.Action):
    """``-o`` where a subcommand writes no file: say that options are ``-O`` now (``-o`` once meant both)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        parser.error(f"-o is the output file (of read and plot); preprocessing options are -O KEY=VALUE: -O {values}")


COMMANDS = [
    ("index", "build the sidecar index (once; --force or other -O options rebuild it)"),
    ("info", "print the object's format, index and attributes"),
    ("partition", "list the slices a strategy makes: records, byte range, window and bounds"),
    ("read", "write slices in their format's own serialisation (stdout or -o)"),
    ("plot", "draw a partition to a PNG (needs dataplug[plot])"),
    ("publish", "index URL into DEST/<name>.dataplug/ (a dataset's: into DEST/) with a README.txt, to serve beside public data"),
    ("serve", "serve htsget (reads and variants by region) over the BAM and VCF objects under ROOT"),
    ("formats", "list the formats, their strategies and preprocessing options"),
]


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="dataplug",
        description="Index big objects in place (S3, any fsspec URL, local files) and read them in slices.",
        epilog=_examples([name for name, _ in COMMANDS], first_only=True),
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"dataplug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=_examples([name]), formatter_class=raw)
        if name == "formats":
            p.add_argument("name", nargs="?", default=None, help="one format (any case; default: every format)")
            continue
        if name == "serve":
            p.add_argument("root", help="folder or prefix of the objects to serve: s3://bucket/genomes/, a local folder, ...")
            p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
            p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
            p.add_argument("--index-location", default=None, metavar="URL", help="where the objects' indexes are (default: beside each object)")
            p.add_argument("-s", "--storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec storage option, e.g. -s anon=true")
            continue
        url_help = "object URL or path; a glob or prefix/ names a dataset"
        if name in ("index", "info"):
            p.add_argument("url", nargs="+", help=url_help + " (as do several URLs)")
        else:
            p.add_argument("url", help=url_help)
        p.add_argument("--format", default="auto", metavar="NAME", help="format, e.g. CSV (default: detected; see `dataplug formats`)")
        p.add_argument("--index-location", default=None, metavar="URL", help="index folder (default: <url>.dataplug/ beside the object)")
        p.add_argument("-s", "--storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec storage option, e.g. -s anon=true")
        if name != "info":
            p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE", help="preprocessing option (see `dataplug formats`); options unlike the index's rebuild it")
        if name in ("index", "partition", "publish"):
            p.add_argument("-o", action=_NotAnOutput, help=argparse.SUPPRESS)
        if name == "index":
            p.add_argument("--force", action="store_true", help="rebuild the index even when a fresh one exists")
        if name == "publish":
            p.add_argument("dest", help="folder for the index (DEST/<name>.dataplug/ unless DEST ends in .dataplug)")
            p.add_argument("--public-dest", default=None, metavar="URL", help="the URL DEST is served at, for the README (default: DEST)")
            p.add_argument("--dest-storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec storage option for DEST")
        if name in ("partition", "read", "plot"):
            p.add_argument("strategy", help="strategy name, e.g. partition_num_chunks (see `dataplug info URL`)")
            p.add_argument("args", nargs="*", help="strategy arguments: values (8) or KEY=VALUE (balance=true); regions: chr1:1-2,chrX:1-5 or a JSON list")
        if name == "read":
            p.add_argument("--slice", type=int, default=None, metavar="N", help="the slice to read (0-based; default: all, as one file)")
            p.add_argument("-o", "--output", default=None, metavar="FILE", help="output file; a '{}' in it makes one file per slice")
            p.add_argument("--workers", type=int, default=None, metavar="N", help="slices read at once (default: one per core)")
        if name == "plot":
            p.add_argument("-o", "--output", default="slices.png", metavar="FILE", help="output PNG (default: slices.png)")
        if name == "partition":
            p.add_argument("--count", action="store_true", help="count records a slice knows only by reading (LiDAR cells, VCF region edges)")
        if name in ("index", "info", "partition"):
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name in ("index", "read"):
            p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr (default: on a terminal)")
    return parser


_COMMANDS = {
    "index": _cmd_index,
    "info": _cmd_info,
    "partition": _cmd_partition,
    "read": _cmd_read,
    "plot": _cmd_plot,
    "publish": _cmd_publish,
    "serve": _cmd_serve,
    "formats": _cmd_formats,
}


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"dataplug: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        _COMMANDS[args.command](args)
    except DataplugError as exc:
        print(f"dataplug: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``dataplug read ... | head``): nothing more to say, and nothing to flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown
    return 0


if __name__ == "__main__":
    sys.exit(main())
