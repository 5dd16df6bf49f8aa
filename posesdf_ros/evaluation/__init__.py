"""Metrics, benchmark runs, reports and plots (benchmark spec, "Metrics")."""
