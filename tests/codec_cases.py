"""Checks shared by the codec tests (test_codecs, test_zstd, test_bzip2): an object stored under a codec gives
back every line, row or read exactly once, in order, for every slice count and strategy."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import HealthCheck, settings

from dataplug.formats.generic.csv import partition_num_chunks as csv_chunks
from dataplug.formats.generic.csv import partition_rows
from dataplug.formats.generic.text import partition_chunk_lines
from dataplug.formats.generic.text import partition_num_chunks as text_chunks
from dataplug.formats.genomics.fastq import partition_reads_batches, partition_sequences_per_chunk
from tests.test_csv import whole_file_table

SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def fastq_oracle(data: bytes) -> list[tuple[str, str, str]]:
    lines = data.decode().splitlines()
    return [(lines[i][1:], lines[i + 1], lines[i + 3]) for i in range(0, len(lines), 4)]


def every_line_once(co, text: str, lines: list[str]) -> None:
    """Every slice count from 1 to two past the lines, both text strategies: the slices' text is ``text``, their
    lines are ``lines`` and each slice starts where the one before stopped."""
    for n in range(1, len(lines) + 3):
        for strategy in (text_chunks, partition_chunk_lines):
            slices = co.partition(strategy, n)
            assert "".join(s.get() for s in slices) == text
            assert [line for s in slices for line in s.lines()] == lines
            assert [a.stop for a in slices[:-1]] == [b.first for b in slices[1:]]


def every_row_once(co, data: bytes, nrows: int, ncols: int) -> None:
    """Every slice count from 1 to two past the rows, both CSV strategies: the slices hold ``nrows`` rows, their
    bytes end the file (the header before them), and for a few counts their Arrow tables are the whole file's."""
    whole = whole_file_table(data, ncols)
    types = {"id": "int64", **{f"c{j}": "string" for j in range(ncols)}}
    for n in range(1, nrows + 3):
        for strategy in (csv_chunks, partition_rows):
            slices = co.partition(strategy, n)
            assert sum(s.num_records for s in slices) == nrows
            assert data.endswith(b"".join(s.raw() for s in slices))
            if n in (1, 3, nrows + 2):
                assert pa.concat_tables([s.to_arrow(column_types=types) for s in slices]).equals(whole)


def every_read_once(co, expected: list[tuple[str, str, str]], counts) -> None:
    """For each slice count in ``counts``, both FASTQ strategies: the slices' reads are ``expected`` and every
    slice starts on a read."""
    for n in counts:
        for strategy in (partition_reads_batches, partition_sequences_per_chunk):
            slices = co.partition(strategy, n)
            assert [r for s in slices for r in s.reads()] == expected
            assert all(s.first % 4 == 0 for s in slices)
