"""Turning the results into Markdown tables, a chart and, with --profile, hot spots."""

from benchmarks.report.chart import chart
from benchmarks.report.profile import summarize_profile
from benchmarks.report.tables import markdown, quietness, targets

__all__ = ["chart", "markdown", "quietness", "summarize_profile", "targets"]
