"""Command line: ``dataplug index | info | partition | read``, thin wrappers over the library.

Examples::

    dataplug index data.csv --format CSV -o sample_bytes=65536
    dataplug info data.csv --format CSV
    dataplug partition data.csv partition_num_chunks 8 --format CSV
    dataplug read data.csv partition_num_chunks 8 --slice 3 --format CSV
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Any

from dataplug import __version__
from dataplug.cloudobject import CloudObject
from dataplug.errors import DataplugError, StrategyArgumentError


def _value(text: str) -> Any:
    """``8`` -> 8, ``true`` -> True, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"option {pair!r} is not key=value")
        out[key] = _value(value)
    return out


def _object(args: argparse.Namespace) -> CloudObject:
    return CloudObject.from_url(args.format, args.url, _options(args.storage_option), args.index_location)


def _slices(args: argparse.Namespace) -> list[Any]:
    co = _object(args)
    strategies = co.format.all_strategies()
    fn = strategies.get(args.strategy)
    if fn is None:
        raise StrategyArgumentError(co.url, f"{co.format.name} has no strategy {args.strategy!r}; it has {', '.join(sorted(strategies))}")
    return co.partition(fn, *[_value(a) for a in args.args])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataplug", description="Index and partition big objects in place.")
    parser.add_argument("--version", action="version", version=f"dataplug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [
        ("index", "build (or refresh with --force) the sidecar index"),
        ("info", "print the object's attributes and index facts"),
        ("partition", "list the slices a strategy makes"),
        ("read", "print one slice's content"),
    ]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("url")
        p.add_argument("--format", required=True, help="format name, e.g. CSV, UTF8Text")
        p.add_argument("--index-location", default=None)
        p.add_argument("-s", "--storage-option", action="append", default=[], metavar="KEY=VALUE")
        if name == "index":
            p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="format option")
            p.add_argument("--force", action="store_true")
        if name in ("partition", "read"):
            p.add_argument("strategy", help="strategy name, e.g. partition_num_chunks")
            p.add_argument("args", nargs="*", help="strategy arguments")
        if name == "read":
            p.add_argument("--slice", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "index":
            t0 = time.perf_counter()
            co = _object(args).preprocess(force=args.force, progress=sys.stderr.isatty(), **_options(args.option))
            print(f"indexed {co.url} in {time.perf_counter() - t0:.2f} s: {co.index().nbytes():,} bytes of tables at {co.index_location.url}")
        elif args.command == "info":
            co = _object(args)
            print(json.dumps({"url": co.url, "format": co.format.name, "index": co.index_location.url, "attributes": asdict(co.attributes)}, indent=1))
        elif args.command == "partition":
            for s in _slices(args):
                fields = {k: v for k, v in vars(s).items() if k not in ("obj", "object_info") and isinstance(v, (int, str, bool, type(None)))}
                print(json.dumps(fields))
        else:
            slices = _slices(args)
            if not 0 <= args.slice < len(slices):
                raise StrategyArgumentError(args.url, f"--slice {args.slice} is not one of the {len(slices)} slices (0..{len(slices) - 1})")
            result = slices[args.slice].get()
            print(result if isinstance(result, str) else repr(result), end="" if isinstance(result, str) else "\n")
            sys.stdout.flush()
    except DataplugError as exc:
        print(f"dataplug: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``dataplug read ... | head``): nothing more to say, and nothing to flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
