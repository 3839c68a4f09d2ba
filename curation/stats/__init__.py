"""Curation's statistics: plain functions over numpy arrays (`judgments.PairwiseJudgments`,
`judgments.Ratings`), with no database and no Django. Agreement, aggregation, reliability,
rater bias, scores, and the machine judges' checks, one module per metric (swap, score_pairs,
strength, transitivity, human_machine, judge_samples, judge_matrix). `curation.loading` fills
the arrays from the database; `curation.report` turns results into a filter run's report."""
