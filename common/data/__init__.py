"""Hospital data: folders (calcifl manifest, CBIS-DDSM), records, splits, cache, summaries."""
