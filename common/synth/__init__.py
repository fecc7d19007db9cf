"""Synthetic multi-vendor mammography data written as real DICOM files.

The generator (:func:`common.synth.generate.synthesize`) writes hospitals in the CBIS-DDSM
layout plus a calcifl manifest and a reader-reads CSV, deterministic for a seed.
"""
