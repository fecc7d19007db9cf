"""Mammogram images: DICOM reading and writing, intensity, geometry, breast region, ROI masks."""
