"""Formats of metabolomics: imzML mass-spectrometry imaging (the ``.imzML`` with its ``.ibd``)."""
