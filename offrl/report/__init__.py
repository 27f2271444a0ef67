"""Reports from run directories: tables, interval statistics (the rliable protocol) and plots.

`write_report(results_dir)` writes report.md and a self-contained report.html; `compare_runs(a, b)`
says which of two sets of runs is better and how sure we can be. The statistics live in
`offrl.report.stats` (NumPy only).
"""

from offrl.report.compare import compare_runs, format_comparison
from offrl.report.results import collect_runs
from offrl.report.render import build_report, write_report

__all__ = ["build_report", "collect_runs", "compare_runs", "format_comparison", "write_report"]
