"""GA4GH htsget (1.3) from dataplug's indexes: :func:`ticket` computes a ticket for a BGZF BAM or VCF
object, :func:`~dataplug.htsget.server.serve` answers htsget requests over a folder or bucket of them
(``dataplug serve ROOT``)."""

from dataplug.htsget.tickets import (
    BGZF_EOF,
    HtsgetError,
    InvalidRangeError,
    ReferenceNotFoundError,
    UnsupportedFormatError,
    bgzf_compress,
    ticket,
)

__all__ = ["BGZF_EOF", "HtsgetError", "InvalidRangeError", "ReferenceNotFoundError", "UnsupportedFormatError", "bgzf_compress", "ticket"]
