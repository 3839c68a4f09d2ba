"""A filter run's report, built from the statistics in `curation.stats`: the evaluation of a run
in its three steps (`filter_run`: excluded raters, unit verdicts, summary), the pairwise and
per-aspect sections (`pairwise`), the machine judges (`judges`) and the score sections (`scores`)."""
