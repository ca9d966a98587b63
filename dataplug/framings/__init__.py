"""Record framings over any codec's logical byte stream: :mod:`~dataplug.framings.base` (the base of every
stream format) and :mod:`~dataplug.framings.lines` (the record-start index of line-oriented records)."""
