"""Plain UTF-8 text: every line and word lands in exactly one slice; multi-byte characters are never cut."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataplug import CloudObject, InvalidFormatError, StrategyArgumentError
from dataplug.formats.generic.text import UTF8Text, partition_chunk_lines, partition_num_chunks, whole_words_strategy
from dataplug.testing import FormatTests

TEXT = st.text(st.sampled_from(list("ab \n\r\té€😀ß")), max_size=300)


def expected_lines(text: str) -> list[str]:
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=TEXT, bom=st.booleans(), chunk_size=st.integers(1, 50), sample_bytes=st.integers(1, 40))
def test_every_line_and_word_exactly_once(local_store, text, bom, chunk_size, sample_bytes):
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    co = CloudObject.from_url(UTF8Text, local_store.put(f"t{len(data)}-{chunk_size}-{sample_bytes}.txt", data))
    co.preprocess(force=True, chunk_size=chunk_size, sample_bytes=sample_bytes)
    lines = expected_lines(text)
    assert co.attributes.lines == len(lines)
    for n in range(1, len(lines) + 3):
        by_bytes = co.partition(partition_num_chunks, n)
        assert len(by_bytes) == n
        assert "".join(s.get() for s in by_bytes) == text
        assert sum((s.lines() for s in by_bytes), []) == lines
        by_lines = co.partition(partition_chunk_lines, n)
        assert all(s.num_records == n for s in by_lines[:-1])
        assert sum((s.lines() for s in by_lines), []) == lines
        words = co.partition(whole_words_strategy, n)
        assert sum((s.words() for s in words), []) == text.split()


def test_on_s3_and_local(store):
    text = "".join(f"line {i} ünïcødé 😀\n" for i in range(500))
    co = CloudObject.from_url(UTF8Text, store.put("big.txt", text.encode()), storage_options=store.options)
    co.preprocess(chunk_size=997, sample_bytes=256)
    assert co.attributes.lines == 500
    for n in (1, 7, 64, 600):
        assert "".join(s.get() for s in co.partition(partition_num_chunks, n)) == text


def test_invalid_utf8_fails_in_the_index_pass_naming_its_offset(local_store):
    data = b"ok\nbad \xff here\n"
    co = CloudObject.from_url(UTF8Text, local_store.put("bad.txt", data))
    with pytest.raises(InvalidFormatError) as err:
        co.preprocess()
    assert err.value.offset == 7 and "encoding='latin-1'" in str(err.value)
    co.preprocess(encoding="latin-1")
    (only,) = co.partition(partition_num_chunks, 1)
    assert only.get() == data.decode("latin-1") and co.attributes.encoding == "iso8859-1"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=60), chunk_size=st.integers(1, 9), cut=st.integers(0, 60))
def test_utf8_is_checked_across_every_range_boundary(local_store, text, chunk_size, cut):
    data = text.encode()
    bad = data[:cut] + b"\xc3" + data[cut:] if cut <= len(data) else data  # a lead byte without its continuation
    co = CloudObject.from_url(UTF8Text, local_store.put(f"u{chunk_size}.txt", bad))
    valid = True
    try:
        bad.decode()
    except UnicodeDecodeError:
        valid = False
    if valid:
        co.preprocess(force=True, chunk_size=chunk_size)
        assert "".join(s.get() for s in co.partition(partition_num_chunks, 3)) == bad.decode()
    else:
        with pytest.raises(InvalidFormatError, match="not valid utf-8"):
            co.preprocess(force=True, chunk_size=chunk_size)


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "iso8859-15"])
def test_single_byte_encodings_read_back(local_store, encoding):
    text = "".join(f"línea {i}: café, naïve, Straße\n" for i in range(300))
    co = CloudObject.from_url(UTF8Text, local_store.put(f"{encoding}.txt", text.encode(encoding)))
    co.preprocess(encoding=encoding, chunk_size=1000)
    assert "".join(s.get() for s in co.partition(partition_num_chunks, 7)) == text


def test_unsupported_encodings_are_refused(local_store):
    co = CloudObject.from_url(UTF8Text, local_store.put("x.txt", b"abc\n"))
    for encoding, message in [("utf-16", "not supported"), ("shift_jis", "not supported"), ("no-such-codec", "unknown text encoding")]:
        with pytest.raises(StrategyArgumentError, match=message):
            co.preprocess(force=True, encoding=encoding)


@pytest.mark.parametrize("chunk_size", [1000, 4096, 3 * 4096, 10**9])
def test_anchor_density_does_not_depend_on_chunk_size(local_store, chunk_size):
    lines = [("x" * (i % 97)) for i in range(3000)]
    data = "\n".join(lines).encode() + b"\n"
    co = CloudObject.from_url(UTF8Text, local_store.put("d.txt", data))
    co.preprocess(chunk_size=chunk_size, sample_bytes=4096)
    offsets = co.index().tables["offsets"]
    assert np.diff(offsets).max() <= 4096 + 97  # a sample point, then at most one line to the next start


# --- the conformance kit ---------------------------------------------------------------------------------


def text_sample(lines: int, seed: int, crlf: bool = False, trailing_newline: bool = True) -> bytes:
    """Seeded UTF-8 text: lines of varied length (blank ones included) with accents, CJK and emoji."""
    rng = np.random.default_rng(seed)
    words = ["the", "café", "naïve", "Straße", "東京", "😀", "x" * 40, "λόγος", "tab\there", ""]
    out = [" ".join(words[w] for w in rng.integers(0, len(words), rng.integers(0, 12))) for _ in range(lines)]
    newline = "\r\n" if crlf else "\n"
    text = newline.join(out) + (newline if trailing_newline else "")
    return text.encode()


class TestUTF8TextConformance(FormatTests):
    format = UTF8Text
    codecs = ("plain", "gzip", "bgzf", "zstd", "bzip2")
    dump_suffix = ".txt"

    def samples(self) -> dict[str, dict[str, bytes]]:
        return {
            "lines": {"lines.txt": text_sample(3000, 1)},
            "crlf_no_trailing_newline": {"crlf.txt": text_sample(400, 2, crlf=True, trailing_newline=False)},
            "bom_and_blank_lines": {"bom.txt": b"\xef\xbb\xbf" + b"\n\n" + text_sample(50, 3) + b"\n\n\n"},
            "one_line_no_newline": {"one.txt": "ünïcødé, no newline".encode()},
            "empty": {"empty.txt": b""},
        }

    def oracle(self, path) -> list[str]:
        """Python's own line reading (``str.splitlines`` for text whose only line breaks are LF and CRLF):
        lines end at ``\\n``, a ``\\r`` before it is dropped, a byte order mark is not text."""
        with open(path, encoding="utf-8-sig", newline="\n") as fh:
            lines = [line.removesuffix("\n").removesuffix("\r") for line in fh]
        text = path.read_bytes().decode("utf-8-sig")
        assert lines == text.splitlines()
        return lines

    def rows(self, table) -> list[str]:
        return table.column("line").to_pylist()

    def large(self, folder) -> tuple[str, int]:
        line = "".join(f"{i:07d} café 東京 😀 {'x' * (i % 61)}\n" for i in range(4096)).encode()
        repeats = 64 * 2**20 // len(line) + 1
        (folder / "large.txt").write_bytes(line * repeats)
        return "large.txt", 4096 * repeats
