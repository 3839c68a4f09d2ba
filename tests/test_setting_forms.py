"""The filter-run and export forms draw a labelled control for every field of the API's serializers,
turn what they post into the JSON those serializers check, and show each refusal by its field."""
import re

import pytest
from django.test import Client

from curation.exports.options import ExportOptionsSerializer
from curation.models import DatasetExport, FilterRun
from curation.rules import FilterRules, FilterRulesSerializer

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(project, researcher):
    client = Client()
    client.force_login(researcher)
    return client


def controls_in(html: str) -> set[str]:
    return set(re.findall(r'<(?:input|select|textarea)[^>]*\bname="([^"]+)"', html))


def labelled(html: str, control_id: str) -> bool:
    return f'<label for="{control_id}">' in html and f'id="{control_id}"' in html


def test_every_filter_rule_has_a_labelled_control_with_its_help(browser):
    html = browser.get("/projects/cats/filter-runs/").content.decode()

    for name, field in FilterRulesSerializer().fields.items():
        assert f"rules.{name}" in controls_in(html), name
        assert labelled(html, f"rules-{name}"), name
        assert str(field.help_text).split(";")[0][:40] in html.replace("&#x27;", "'"), name
    assert "rules_json" in controls_in(html)


def test_every_export_option_has_a_labelled_control_and_formats_and_containers_are_selects(browser):
    html = browser.get("/projects/cats/exports/").content.decode()

    for name in ExportOptionsSerializer().fields:
        assert f"options.{name}" in controls_in(html), name
        assert labelled(html, f"options-{name}"), name
    assert re.search(r'<select id="export-format" name="format"', html)
    assert re.search(r'<select id="export-container" name="container"', html)
    assert 'data-formats="pamela"' in html and "Read by pickapic, trl only." in html


def test_the_controls_show_the_defaults_with_bounds_and_an_empty_value_for_off(browser):
    html = browser.get("/projects/cats/filter-runs/").content.decode()

    assert re.search(r'<select id="rules-consensus"[^>]*>\s*<option value="dawid_skene" selected', html)
    assert re.search(r'id="rules-min_confidence" name="rules.min_confidence" value="0.0" step="any"\s*min="0" max="1"',
                     html)
    assert re.search(r'id="rules-min_rater_agreement" name="rules.min_rater_agreement" value=""', html)
    assert re.search(r'type="checkbox" id="rules-drop_ties" name="rules.drop_ties" value="true"\s*aria', html)


def rules_post(**changes) -> dict:
    """What the form posts with its defaults untouched, and `changes` (a checkbox left out is off)."""
    posted = {"name": "from-form"}
    for name, value in FilterRules().as_json().items():
        if isinstance(value, bool):
            if value:
                posted[f"rules.{name}"] = "true"
        else:
            posted[f"rules.{name}"] = "" if value is None else str(value)
    posted.update({key.replace("__", "."): value for key, value in changes.items()})
    return posted


def test_a_run_started_from_the_controls_stores_typed_rules(browser, project):
    answer = browser.post("/projects/cats/filter-runs/", rules_post(
        rules__consensus="majority", rules__min_rater_agreement="0.6", rules__min_judgments="3",
        rules__drop_ties="true"))

    run = FilterRun.objects.get(project=project, name="from-form")
    assert answer.status_code == 302 and answer["Location"] == f"/filter-runs/{run.pk}/"
    assert run.rules == {**FilterRules().as_json(), "consensus": "majority", "min_rater_agreement": 0.6,
                         "min_judgments": 3, "drop_ties": True}


def test_a_bad_number_is_refused_next_to_its_field_with_what_was_typed_kept(browser):
    answer = browser.post("/projects/cats/filter-runs/", rules_post(rules__min_confidence="3",
                                                                    rules__consensus="glad"))
    html = answer.content.decode()

    assert answer.status_code == 400 and not FilterRun.objects.exists()
    assert re.search(r'id="rules-min_confidence-error"[^>]*>must lie between 0 and 1 \(got 3\)</p>', html)
    assert 'name="rules.min_confidence" value="3"' in html
    assert re.search(r'<option value="glad" selected', html)


def test_a_check_across_fields_and_a_service_check_land_by_the_field_they_name(browser):
    html = browser.post("/projects/cats/filter-runs/", rules_post(
        rules__likely_wrong_pct="60", rules__ambiguous_pct="50")).content.decode()
    assert re.search(r'id="rules-ambiguous_pct-error"[^>]*>likely_wrong_pct \+ ambiguous_pct must be at most 100', html)

    html = browser.post("/projects/cats/filter-runs/", rules_post(rules__aspect="colour")).content.decode()
    assert re.search(r"id=\"rules-aspect-error\"[^>]*>&#x27;colour&#x27; is not an aspect of this project", html)


def test_the_advanced_json_wins_over_the_controls_and_is_checked_the_same_way(browser, project):
    browser.post("/projects/cats/filter-runs/", rules_post(rules__consensus="glad",
                                                           rules_json='{"consensus": "mace", "seed": 7}'))
    assert FilterRun.objects.get(name="from-form").rules["consensus"] == "mace"

    answer = browser.post("/projects/cats/filter-runs/", rules_post(rules_json='{"min_confidence": "high"}'))
    html = answer.content.decode()
    assert answer.status_code == 400
    assert "<li>min_confidence: must lie between 0 and 1 (got &#x27;high&#x27;)</li>" in html
    assert re.search(r'<details class="settings-advanced"[^>]* open>', html)

    html = browser.post("/projects/cats/filter-runs/", rules_post(rules_json="{nope")).content.decode()
    assert "not valid JSON" in html and "{nope</textarea>" in html


def options_post(**changes) -> dict:
    posted = {"format": "pamela", "container": "jsonl", "destination": "", "filter_run": "",
              "options.unseen_people": "0.1", "options.unseen_images": "0.1"}
    for name, field in ExportOptionsSerializer().fields.items():
        posted.setdefault(f"options.{name}", "" if field.default is None else str(field.default))
    posted.update({key.replace("__", "."): value for key, value in changes.items()})
    return posted


def test_an_export_started_from_the_controls_stores_typed_options(browser, project):
    answer = browser.post("/projects/cats/exports/", options_post(
        options__unseen_people__names="anna, bob", options__unseen_images="0.25", options__seed="4",
        options__images="reference"))

    export = DatasetExport.objects.get(project=project)
    assert answer.status_code == 302 and answer["Location"] == f"/exports/{export.pk}/"
    assert (export.format, export.container) == ("pamela", "jsonl")
    assert export.options["unseen_people"] == ["anna", "bob"] and export.options["unseen_images"] == 0.25
    assert export.options["seed"] == 4 and export.options["images"] == "reference"
    assert export.options["aspects"] is None and export.options["rows_per_shard"] is None


def test_a_bad_option_and_a_bad_destination_are_refused_by_their_fields(browser):
    answer = browser.post("/projects/cats/exports/", options_post(options__image_max_side="8",
                                                                  container="zip"))
    html = answer.content.decode()

    assert answer.status_code == 400 and not DatasetExport.objects.exists()
    assert re.search(r'id="options-image_max_side-error"[^>]*>must be a whole number from 16 to 8192', html)
    assert "unknown container &#x27;zip&#x27;" in html and 'name="options.image_max_side" value="8"' in html

    html = browser.post("/projects/cats/exports/", options_post(destination="ftp://x/y")).content.decode()
    assert re.search(r'id="export-destination-error"[^>]*>&#x27;ftp://x/y&#x27;: only local folders', html)


def test_a_new_rule_gets_a_control_without_a_template_edit():
    from django.template.loader import render_to_string
    from rest_framework import serializers

    from curation.json_fields import NumberField
    from frontend.setting_forms import OTHER_GROUP, RULE_GROUPS, SettingsForm

    class WithNewRules(FilterRulesSerializer):
        max_latency_s = NumberField(min_value=0, allow_null=True, default=None, why="must be at least 0",
                                    help_text="Leave out judgments slower than this.")
        weights = serializers.DictField(default=dict, help_text="A kind of field the forms do not know.")

    form = SettingsForm(WithNewRules, prefix="rules", groups=RULE_GROUPS)
    html = render_to_string("frontend/settings_fields.html", {"form": form, "noun": "rules"})

    assert form.fieldsets[-1][0] == OTHER_GROUP
    assert [c.key for c in form.fieldsets[-1][1]] == ["max_latency_s", "weights"]
    assert re.search(r'<input type="number" id="rules-max_latency_s" name="rules.max_latency_s" value="" step="any"\s*'
                     r'min="0"', html)
    assert 'name="rules.weights" value="{}"' in html and "Leave out judgments slower than this." in html
    assert form.bind({"rules.max_latency_s": "", "rules.weights": '{"a": 2}'})["weights"] == {"a": 2}


def test_the_export_form_starts_on_the_latest_finished_run_so_its_default_format_can_export(browser, project,
                                                                                           researcher):
    older, latest = (FilterRun.objects.create(project=project, name=name, version=1, rules={}, created_by=researcher,
                                              status=FilterRun.Status.SUCCEEDED) for name in ("first", "second"))
    FilterRun.objects.create(project=project, name="running", version=1, rules={}, created_by=researcher,
                             status=FilterRun.Status.RUNNING)

    html = browser.get("/projects/cats/exports/").content.decode()
    assert re.search(rf'<option value="{latest.pk}"\s+selected>', html), "the latest finished run is not chosen"
    assert not re.search(rf'<option value="{older.pk}"\s+selected>', html)
    # A run named in the address (the run page's "Export the units this run kept") still wins.
    html = browser.get(f"/projects/cats/exports/?filter_run={older.pk}").content.decode()
    assert re.search(rf'<option value="{older.pk}"\s+selected>', html)
