"""The reader-assist study: arms, a hospital's cases, summable statistics, tables."""
