"""Command line: ``dataplug index | info | partition | read | plot``, thin wrappers over the library.

Mistakes print one line, ``dataplug: <message>``, and exit 2; ``read`` writes each format's own
serialisation, so it fits in a pipeline (``| head`` closes it quietly).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, BinaryIO

from dataplug import __version__
from dataplug.cloudobject import CloudObject
from dataplug.errors import CorruptIndexError, DataplugError, IndexMissingError, StaleIndexError, StrategyArgumentError
from dataplug.executors import default_workers, ordered_ahead, progress_bar
from dataplug.format import available_formats, get_format

EXAMPLES = """examples:
  dataplug index s3://bucket/reads.fastq.gz                 detect the format, build the index
  dataplug info s3://bucket/reads.fastq.gz
  dataplug partition s3://bucket/reads.fastq.gz partition_reads_batches 8
  dataplug read s3://bucket/reads.fastq.gz partition_reads_batches 8 --slice 3 | head
  dataplug read data.csv partition_num_chunks 4 -o 'part-{}.csv'   one file per slice
  dataplug read tile.laz square_split_strategy 16 --slice 5 -o cell5.las
  dataplug plot tile.laz square_split_strategy 16 -o cells.png
  dataplug index data.csv --format CSV -o delimiter=';' -o encoding=latin-1
  dataplug publish https://host/data/x.fastq.gz s3://host-bucket/index/ --public-dest https://host/index/
  dataplug read https://host/data/x.fastq.gz partition_reads_batches 8 --index-location https://host/index/x.fastq.gz.dataplug/
"""


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


def _object(args: argparse.Namespace) -> CloudObject:
    return CloudObject.from_url(args.format, args.url, _pairs(args.storage_option, "storage option"), args.index_location)


def _arguments(raw: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Strategy arguments from the command line: values, and ``KEY=VALUE`` keywords."""
    positional = [_value(a) for a in raw if not _is_keyword(a)]
    keywords = {k: _value(v) for k, _, v in (a.partition("=") for a in raw if _is_keyword(a))}
    return positional, keywords


def _is_keyword(arg: str) -> bool:
    key, sep, _ = arg.partition("=")
    return bool(sep) and key.isidentifier()


def _slices(args: argparse.Namespace) -> tuple[CloudObject, list[Any]]:
    co = _object(args)
    positional, keywords = _arguments(args.args)
    try:
        return co, co.partition(args.strategy, *positional, **keywords)
    except (IndexMissingError, StaleIndexError, CorruptIndexError):
        if co.published:
            raise
    print(f"dataplug: {co.url} has no fresh {co.format.name} index yet: indexing it first (what `dataplug index` does)", file=sys.stderr)
    co.preprocess(progress=getattr(args, "progress", None))
    return co, co.partition(args.strategy, *positional, **keywords)


def _describe(s: Any) -> dict[str, Any]:
    """A slice as JSON: its number, records, byte range and the plain fields it carries."""
    out: dict[str, Any] = {"slice": s.number, "records": s.num_records, "byte_range": list(s.byte_range() or ()) or None}
    for key, value in vars(s).items():
        if key not in ("obj", "object_info", "number") and isinstance(value, (int, float, str, bool, type(None))):
            out[key] = value
        elif key == "window" and isinstance(value, tuple):
            out[key] = list(value)
    return out


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


def _cmd_index(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    co = _object(args).preprocess(force=args.force, progress=args.progress, **_pairs(args.option, "option"))
    facts = {"url": co.url, "format": co.format.name, "seconds": round(time.perf_counter() - t0, 3), "index": co.index_location.url, "index_bytes": co.index().nbytes()}
    if args.json:
        print(json.dumps(facts))
    else:
        print(f"indexed {co.url} as {co.format.name} in {facts['seconds']:.2f} s: {facts['index_bytes']:,} bytes of tables at {co.index_location.url}")


def _cmd_info(args: argparse.Namespace) -> None:
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
    described = [_describe(s) for s in slices]
    if args.json:
        for d in described:
            print(json.dumps(d))
        return
    unit = "decoded bytes" if getattr(co.attributes, "compression", "none") not in ("none", None) else "bytes"
    rows = [["slice", "records", unit]]
    for d in described:
        span = d["byte_range"]
        rows.append([str(d["slice"]), "?" if d["records"] is None else f"{d['records']:,}", f"[{span[0]:,}, {span[1]:,})" if span else "-"])
    _table(rows)
    known = [d["records"] for d in described if d["records"] is not None]
    print(f"{len(slices)} slices of {co.url}" + (f", {sum(known):,} records" if len(known) == len(described) else ""), file=sys.stderr)


def _dumped(s: Any) -> bytes:
    buf = io.BytesIO()
    s.dump(buf)
    return buf.getvalue()


def _cmd_read(args: argparse.Namespace) -> None:
    co, slices = _slices(args)
    if args.slice is not None:
        if not 0 <= args.slice < len(slices):
            raise StrategyArgumentError(co.url, f"--slice {args.slice} is not one of the {len(slices)} slices (0..{len(slices) - 1})")
        slices = [slices[args.slice]]
    binary = any(s.binary_output for s in slices)
    if args.output and "{}" in args.output:
        for s in slices:
            _write_one(s, args.output.replace("{}", str(s.number)))
        return
    if args.output and binary:
        if len(slices) > 1:
            raise StrategyArgumentError(co.url, f"{co.format.name} slices are separate files: pick one with --slice N, or write each with -o 'cell-{{}}{os.path.splitext(args.output)[1]}'")
        _write_one(slices[0], args.output)
        return
    if binary and not args.output and sys.stdout.isatty():
        raise StrategyArgumentError(co.url, f"{co.format.name} slices are binary: write one to a file with -o FILE (or pipe the output)")
    if args.output:
        with open(args.output, "wb") as fp:
            _stream(slices, fp, args)
    else:
        _stream(slices, sys.stdout.buffer, args)


def _write_one(s: Any, path: str) -> None:
    to_file = getattr(s, "to_file", None)
    if s.binary_output and to_file is not None:
        to_file(path)  # e.g. laspy picks LAS or LAZ from the extension
        return
    with open(path, "wb") as fp:
        s.dump(fp)


def _stream(slices: list[Any], fp: BinaryIO, args: argparse.Namespace) -> None:
    """Dump the slices in order, reading a few ahead on threads; memory holds about 2 x workers slices."""
    workers = args.workers or default_workers()
    with ThreadPoolExecutor(workers) as pool, progress_bar(len(slices), "slices", args.progress if len(slices) > 1 else False, unit="slice") as bar:
        for data in ordered_ahead(_dumped, slices, pool, 2 * workers):
            fp.write(data)
            bar.update(1)
        fp.flush()


def _cmd_publish(args: argparse.Namespace) -> None:
    from dataplug.publish import README_NAME, index_folder, publish

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


def _cmd_plot(args: argparse.Namespace) -> None:
    co, slices = _slices(args)
    path = co.plot_partition(slices, args.output)
    print(f"wrote {path} ({len(slices)} slices of {co.url})")


def _catalog(with_options: bool) -> str:
    """The formats dataplug finds, with their strategies (and preprocessing options)."""
    lines = ["formats (--format NAME, any case; the default 'auto' detects it from the first bytes):"]
    for name in available_formats():
        try:
            fmt = get_format(name)
        except ImportError as exc:
            lines.append(f"  {name}: needs an extra ({exc.name} is not installed)")
            continue
        summary = " ".join((fmt.__doc__ or "").split()).split(". ")[0].rstrip(".")
        lines.append(f"  {name}: {summary}")
        lines.append(f"    strategies: {', '.join(sorted(fmt.all_strategies()))}")
        if with_options:
            for option, help_text in sorted(fmt.all_options().items()):
                lines.append(f"    -o {option}=...  {help_text}")
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    """Appends the format catalog to ``--help`` when asked for it (importing every format is not free)."""

    catalog: bool | None = None

    def format_help(self) -> str:
        text = super().format_help()
        return text if self.catalog is None else text + "\n" + _catalog(self.catalog)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dataplug",
        description="Index big objects in place (S3, any fsspec URL, local files) and read them in slices.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.catalog = False
    parser.add_argument("--version", action="version", version=f"dataplug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text in [
        ("index", "build the sidecar index (once; --force rebuilds it)"),
        ("info", "print the object's format, index and attributes"),
        ("partition", "list the slices a strategy makes: records and byte range of each"),
        ("read", "write slices in their format's own serialisation (stdout or -o)"),
        ("plot", "draw a partition to a PNG (needs dataplug[plot])"),
        ("publish", "index URL into DEST/<name>.dataplug/ with a README.txt, to serve beside a public dataset"),
    ]:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.catalog = name in ("index", "info", "publish")
        p.add_argument("url", help="object URL: s3://bucket/key, gs://..., https://..., file://... or a local path")
        p.add_argument("--format", default="auto", help="format name, e.g. CSV, fastq (default: auto, detected from the object's first bytes)")
        p.add_argument("--index-location", default=None, help="folder or bucket for the index (default: <url>.dataplug/ beside the object)")
        p.add_argument("-s", "--storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec storage option, e.g. -s anon=true")
        if name in ("index", "publish"):
            p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="preprocessing option of the format (listed below)")
        if name == "index":
            p.add_argument("--force", action="store_true", help="rebuild the index even when a fresh one exists")
        if name == "publish":
            p.add_argument("dest", help="folder for the index (written to DEST/<name>.dataplug/ unless DEST ends in .dataplug)")
            p.add_argument("--public-dest", default=None, help="the URL DEST is served at, for the README's usage lines (default: DEST)")
            p.add_argument("--dest-storage-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec storage option for DEST")
        if name in ("partition", "read", "plot"):
            p.add_argument("strategy", help="strategy name, e.g. partition_num_chunks (see `dataplug info URL`)")
            p.add_argument("args", nargs="*", help="strategy arguments: values (8) or KEY=VALUE (balance=true)")
        if name == "read":
            p.add_argument("--slice", type=int, default=None, help="the slice to read (0-based; default: all, in order)")
            p.add_argument("-o", "--output", default=None, help="write to this file; a '{}' in it makes one file per slice")
            p.add_argument("--workers", type=int, default=None, help="slices read at once (default: one per core)")
        if name == "plot":
            p.add_argument("-o", "--output", default="slices.png", help="PNG path (default: slices.png)")
        if name in ("index", "info", "partition"):
            p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name in ("index", "read"):
            p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bar on stderr (default: on a terminal)")
    return parser


_COMMANDS = {"index": _cmd_index, "info": _cmd_info, "partition": _cmd_partition, "read": _cmd_read, "plot": _cmd_plot, "publish": _cmd_publish}


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
