"""Seeded mzML documents for the tests and the benchmark, written by psims (the PSI's own writer library):
indexed or not, raw or zlib arrays, 32- or 64-bit, MS1 and MS2 spectra (some without peaks), chromatograms;
and the text edits that make the cases psims cannot write (arrays described by referenceable parameter
groups, retention times in seconds, MS-Numpress)."""

from __future__ import annotations

import io
import re

import numpy as np
from psims.mzml.writer import MzMLWriter, PlainMzMLWriter

#: psims' names of the array data types, by bits.
BITS = {32: np.float32, 64: np.float64}


def make_mzml(
    spectra: int,
    seed: int = 0,
    indexed: bool = True,
    compression: str = "zlib",
    mz_bits: int = 64,
    intensity_type: type = np.float32,
    peaks: tuple[int, int] = (0, 60),
    chromatograms: bool = True,
    ms2_every: int = 3,
) -> bytes:
    """A document of ``spectra`` spectra: every ``ms2_every``-th an MS1 survey scan, the others MS2 with a
    precursor; retention times rise 0.5 s per spectrum (written in minutes); peak counts drawn from
    ``peaks``; when that allows 0, every 17th spectrum from the 5th has none. With ``chromatograms``, a TIC and a base peak chromatogram."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    writer = (MzMLWriter if indexed else PlainMzMLWriter)(out, close=False)
    with writer:
        writer.controlled_vocabularies()
        writer.file_description(["MS1 spectrum", "MSn spectrum", "centroid spectrum"])
        writer.software_list([{"id": "psims-writer", "version": "1.0", "params": ["python-psims"]}])
        source = writer.Source(1, ["electrospray ionization", "electrospray inlet"])
        analyzer = writer.Analyzer(2, ["orbitrap"])
        detector = writer.Detector(3, ["inductive detector"])
        writer.instrument_configuration_list([writer.InstrumentConfiguration(id="IC1", component_list=[source, analyzer, detector])])
        methods = [writer.ProcessingMethod(order=1, software_reference="psims-writer", params=["Conversion to mzML"])]
        writer.data_processing_list([writer.DataProcessing(methods, id="DP1")])
        tic = []
        with writer.run(id="run1", instrument_configuration="IC1"):
            with writer.spectrum_list(count=spectra):
                survey = "scan=1"
                for i in range(spectra):
                    k = 0 if i % 17 == 4 and peaks[0] == 0 else int(rng.integers(peaks[0], peaks[1] + 1))
                    mz = np.sort(rng.uniform(100, 2000, k))
                    intensity = rng.uniform(0, 1e6, k).astype(intensity_type)
                    level = 1 if i % ms2_every == 0 else 2
                    extra = {}
                    if level == 1:
                        survey = f"scan={i + 1}"
                    else:
                        extra["precursor_information"] = {
                            "mz": float(rng.uniform(300, 1500)),
                            "intensity": float(rng.uniform(1e3, 1e6)),
                            "charge": int(rng.integers(1, 4)),
                            "scan_id": survey,
                            "activation": ["beam-type collisional dissociation", {"collision energy": 27}],
                            "isolation_window": [0.8, 0.0, 0.8],
                        }
                    params = ["MS1 spectrum" if level == 1 else "MSn spectrum", {"ms level": level}, {"total ion current": float(intensity.sum())}, "centroid spectrum"]
                    writer.write_spectrum(
                        mz, intensity, id=f"scan={i + 1}", params=params, scan_start_time=i / 120, compression=compression,
                        encoding={"m/z array": BITS[mz_bits], "intensity array": intensity_type}, **extra,
                    )
                    tic.append(float(intensity.sum()))
            if chromatograms:
                times = np.arange(spectra) / 120
                with writer.chromatogram_list(count=2):
                    writer.write_chromatogram(times, np.asarray(tic), id="TIC", chromatogram_type="total ion current chromatogram", compression=compression)
                    writer.write_chromatogram(times, np.asarray(tic) / 2, id="BPC", chromatogram_type="basepeak chromatogram", compression=compression)
    return out.getvalue()


def in_seconds(document: bytes) -> bytes:
    """The retention times of a document without an index written in seconds (the values times 60)."""
    def seconds(found: re.Match[bytes]) -> bytes:
        return b'name="scan start time" value="' + repr(float(found.group(1)) * 60).encode() + b'" unitCvRef="UO" unitAccession="UO:0000010" unitName="second"'

    return re.sub(rb'name="scan start time" value="([^"]*)" unitCvRef="[^"]*" unitAccession="UO:0000031" unitName="minute"', seconds, document)


def with_param_groups(document: bytes) -> bytes:
    """A document without an index whose arrays state their type and compression through
    ``referenceableParamGroupRef`` (as imzML writers and some converters do)."""
    groups = {}

    def refer(found: re.Match[bytes]) -> bytes:
        params = found.group(2)
        name = f"array{len(groups) if params not in groups else list(groups).index(params)}"
        groups.setdefault(params, name)
        return found.group(1) + b'<referenceableParamGroupRef ref="' + groups[params].encode() + b'"/>\n'

    pattern = rb'(<binaryDataArray encodedLength="[0-9]+">\s*)((?:<cvParam [^>]*/>\s*){3})'
    body = re.sub(pattern, refer, document)
    listed = b"".join(b'<referenceableParamGroup id="' + name.encode() + b'">\n' + params + b"</referenceableParamGroup>\n" for params, name in groups.items())
    block = b'<referenceableParamGroupList count="' + str(len(groups)).encode() + b'">\n' + listed + b"</referenceableParamGroupList>\n"
    return body.replace(b"<softwareList", block + b"<softwareList", 1)
