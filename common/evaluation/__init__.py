"""Poolable evaluation statistics, metrics, reports and figures."""
