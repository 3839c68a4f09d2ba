"""The filter-run report's chart rows (frontend/report_chart_data.py), from summaries written here."""
from frontend.report_chart_data import (
    LEFT_OUT, USED, aspect_alpha_rows, judge_matrix_cells, judge_matrix_table, rater_points, strength_bins,
)


def rater(name, judgments, agreement, excluded=""):
    return {"rater": name, "judgments": judgments, "agreement": agreement, "excluded": excluded}


def test_raters_with_the_same_figures_share_one_point_that_names_them_all():
    chart = rater_points([rater("ann", 40, 0.8), rater("bob", 40, 0.8), rater("cy", 40, 0.8, "position bias"),
                          rater("dee", 12, 0.5), rater("eve", 3, None)])

    points = {p["raters"]: p for p in chart["points"]}
    assert set(points) == {"ann, bob", "cy", "dee"}  # eve has no agreement to place
    assert points["ann, bob"]["label"] == "ann, bob" and points["ann, bob"]["status"] == USED
    assert points["cy"]["status"] == LEFT_OUT and points["cy"]["why"] == "position bias"
    assert chart["labelled"]


def test_a_crowded_point_lists_three_names_and_how_many_more():
    chart = rater_points([rater(f"r{i}", 10, 1.0) for i in range(5)])

    assert [p["label"] for p in chart["points"]] == ["r0, r1, r2 +2"]
    assert chart["points"][0]["raters"] == "r0, r1, r2, r3, r4"


def test_aspects_are_named_by_their_label_and_one_without_alpha_keeps_its_row():
    rows = aspect_alpha_rows([
        {"aspect": "prompt_following", "alpha": 0.41, "alpha_ci": [0.3, 0.5], "judgments": 90, "message": ""},
        {"aspect": "gone", "alpha": None, "alpha_ci": [None, None], "judgments": 4, "message": "one annotator"},
    ], {"prompt_following": "Prompt following"}, alpha="alpha", interval="alpha_ci", count="judgments")

    assert [(r["aspect"], r["alpha"], r["low"], r["high"]) for r in rows] == [
        ("Prompt following", 0.41, 0.3, 0.5), ("gone", None, None, None)]
    assert rows[1]["note"] == "one annotator"


def test_the_matrix_table_prints_the_very_cells_of_the_heat_map_in_column_order():
    chart = judge_matrix_cells({"labels": ["human consensus", "judge-student-a", "judge-student-b"],
                                "agreement": [[1.0, 0.25, None], [0.25, 1.0, 0.145], [None, 0.145, 1.0]],
                                "shared": [[8, 4, 0], [4, 9, 7], [0, 7, 7]]})

    table = judge_matrix_table(chart)

    assert [row["label"] for row in table] == ["human consensus", "judge-student-a", "judge-student-b"]
    assert [[c["text"] for c in row["cells"]] for row in table] == [
        ["1.00", "0.25", "–"], ["0.25", "1.00", "0.14"], ["–", "0.14", "1.00"]]
    assert [c["column"] for c in table[1]["cells"]] == ["human consensus", "judge-student-a", "judge-student-b"]
    assert table[0]["cells"][1]["shared"] == 4


def test_strength_bins_pair_each_count_with_its_edges():
    assert strength_bins({"edges": [-1.0, 0.0, 1.0], "counts": [3, 5]}) == [
        {"low": -1.0, "high": 0.0, "units": 3}, {"low": 0.0, "high": 1.0, "units": 5}]
    assert strength_bins(None) == []
