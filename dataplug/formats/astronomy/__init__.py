"""Astronomy formats: the MeasurementSet of radio interferometry (:mod:`dataplug.formats.astronomy.ms`)."""
