"""Filter rules and export options are typed objects in the OpenAPI schema (so client generators
work), checked by their serializers: a bad value or an unknown key is a 400 naming it, and what is
stored is complete with defaults."""
from dataclasses import fields

import pytest
from rest_framework.test import APIClient

from curation.exports.options import CONTAINERS, FORMATS, ExportOptions, ExportOptionsSerializer
from curation.models import DatasetExport, FilterRun
from curation.rules import CONSENSUS_METHODS, FilterRules, FilterRulesSerializer
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def resolved(schema: dict, node: dict) -> dict:
    """`node` with its $ref (or a lone allOf $ref, how a described reference is written) followed."""
    while True:
        if "$ref" in node:
            ref = node["$ref"]
        elif len(node.get("allOf", [])) == 1 and "$ref" in node["allOf"][0]:
            ref = node["allOf"][0]["$ref"]
        else:
            return node
        node = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def request_body(schema: dict, operation_id: str) -> dict:
    for path in schema["paths"].values():
        for operation in path.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return resolved(schema, operation["requestBody"]["content"]["application/json"]["schema"])
    raise AssertionError(f"no operation {operation_id} in the schema")


def test_the_schema_types_filter_rules_with_every_rule_its_enums_and_bounds(schema):
    rules = resolved(schema, request_body(schema, "filter_runs_create")["properties"]["rules"])
    properties = rules["properties"]

    assert rules["type"] == "object" and set(properties) == {f.name for f in fields(FilterRules)}
    assert resolved(schema, properties["consensus"])["enum"] == list(CONSENSUS_METHODS)
    assert resolved(schema, properties["ties"])["enum"] == ["model", "share"]
    assert properties["min_confidence"]["type"] == "number" and (properties["min_confidence"]["minimum"],
                                                                 properties["min_confidence"]["maximum"]) == (0, 1)
    assert properties["min_rater_agreement"]["nullable"] is True
    assert properties["min_judgments"]["type"] == "integer" and properties["min_judgments"]["minimum"] == 1
    assert properties["position_bias_p"]["exclusiveMinimum"] is True
    assert properties["drop_ties"]["type"] == "boolean" and properties["drop_ties"]["default"] is False
    assert all(prop.get("description") for prop in properties.values())


def test_the_schema_types_export_options_and_enumerates_formats_and_containers(schema):
    body = request_body(schema, "exports_create")
    options = resolved(schema, body["properties"]["options"])
    properties = options["properties"]

    assert resolved(schema, body["properties"]["format"])["enum"] == list(FORMATS)
    assert resolved(schema, body["properties"]["container"])["enum"] == list(CONTAINERS)
    assert options["type"] == "object" and set(properties) == {f.name for f in fields(ExportOptions)}
    assert resolved(schema, properties["images"])["enum"] == ["embed", "reference"]
    assert resolved(schema, properties["rows"])["enum"] == ["consensus", "judgments"]
    assert [choice["type"] for choice in properties["unseen_people"]["oneOf"]] == ["number", "array"]
    assert properties["unseen_people"]["oneOf"][0]["exclusiveMaximum"] is True
    assert properties["aspects"]["items"]["type"] == "string" and properties["aspects"]["nullable"] is True
    assert all(prop.get("description") for prop in properties.values())


def test_stored_rules_and_options_are_typed_in_the_answers_too(schema):
    components = schema["components"]["schemas"]

    assert resolved(schema, components["FilterRun"]["properties"]["rules"])["properties"].keys() == \
        {f.name for f in fields(FilterRules)}
    assert resolved(schema, components["DatasetExport"]["properties"]["options"])["properties"].keys() == \
        {f.name for f in fields(ExportOptions)}


def test_the_serializers_hold_exactly_the_dataclasses_fields_and_defaults():
    for dataclass, serializer in ((FilterRules, FilterRulesSerializer()), (ExportOptions, ExportOptionsSerializer())):
        assert list(serializer.fields) == [f.name for f in fields(dataclass)]
        assert {name: field.default for name, field in serializer.fields.items()} == \
            {f.name: f.default for f in fields(dataclass)}


@pytest.mark.parametrize(("rules", "message"), [
    ({"min_confidence": 1.5}, "rules: min_confidence: must lie between 0 and 1 (got 1.5)"),
    ({"min_confidence": "0.5"}, "rules: min_confidence: must lie between 0 and 1 (got '0.5')"),
    ({"consensus": "vibes"}, "rules: consensus: must be one of dawid_skene, one_coin_ds, glad, mace, noisy_bt, "
                             "majority (got 'vibes')"),
    ({"drop_ties": 1}, "rules: drop_ties: must be true or false (got 1)"),
    ({"likely_wrong_pct": 60, "ambiguous_pct": 50},
     "rules: ambiguous_pct: likely_wrong_pct + ambiguous_pct must be at most 100"),
    ({"aspect": "taste"}, "rules: aspect: 'taste' is not an aspect of this project"),
])
def test_a_bad_rule_through_the_api_is_a_400_naming_it(project, researcher, rules, message):
    response = client_for(researcher).post("/api/v1/projects/cats/filter-runs/", {"name": "x", "rules": rules},
                                           format="json")

    assert response.status_code == 400 and response.json()["message"].startswith(f"Invalid input: {message}")
    assert set(response.json()) == {"message", "extra"} and FilterRun.objects.count() == 0


@pytest.mark.parametrize(("body", "message"), [
    ({"options": {"unseen_people": 1.5}},
     "options: unseen_people: must be a share from 0 (inclusive) to 1 (exclusive), or a list (got 1.5)"),
    ({"options": {"unseen_images": ["ab", 3]}}, "options: unseen_images: a list must hold strings (got ['ab', 3])"),
    ({"options": {"images": "link"}}, "options: images: must be embed or reference (got 'link')"),
    ({"options": {"image_max_side": 8}}, "options: image_max_side: must be a whole number from 16 to 8192"),
    ({"container": "zip"}, "container: unknown container 'zip'; known: parquet, jsonl, webdataset"),
])
def test_a_bad_option_or_container_through_the_api_is_a_400_naming_it(project, researcher, body, message):
    response = client_for(researcher).post("/api/v1/projects/cats/exports/", {"format": "pamela", **body},
                                           format="json")

    assert response.status_code == 400 and response.json()["message"].startswith(f"Invalid input: {message}")
    assert DatasetExport.objects.count() == 0


def test_unknown_rules_and_options_are_refused_by_name(project, researcher):
    client = client_for(researcher)

    rules = client.post("/api/v1/projects/cats/filter-runs/", {"name": "x", "rules": {"threshold": 3, "min_conf": 1}},
                        format="json")
    options = client.post("/api/v1/projects/cats/exports/", {"format": "pamela", "options": {"shuffle": True}},
                          format="json")

    assert rules.status_code == 400 and rules.json()["message"].startswith(
        "Invalid input: rules: unknown rule(s) min_conf, threshold; known: ambiguous_pct, aspect,")
    assert options.status_code == 400 and options.json()["message"].startswith(
        "Invalid input: options: unknown option(s) shuffle; known: aspect, aspects,")


def test_rules_and_options_are_stored_with_the_defaults_filled_in(project, researcher):
    client = client_for(researcher)

    run = client.post("/api/v1/projects/cats/filter-runs/", {"name": "x", "rules": {"min_judgments": 2}},
                      format="json")
    bare = client.post("/api/v1/projects/cats/filter-runs/", {"name": "y"}, format="json")
    export = client.post("/api/v1/projects/cats/exports/", {"format": "pamela", "options": {"unseen_people": ["p1"]}},
                         format="json")

    assert run.status_code == bare.status_code == export.status_code == 202
    assert FilterRun.objects.get(pk=run.json()["id"]).rules == {**FilterRules().as_json(), "min_judgments": 2}
    assert FilterRun.objects.get(pk=bare.json()["id"]).rules == FilterRules().as_json()
    assert DatasetExport.objects.get(pk=export.json()["id"]).options == {**ExportOptions().as_json(),
                                                                         "unseen_people": ["p1"]}
    assert run.json()["rules"]["consensus"] == "dawid_skene" and export.json()["options"]["images"] == "embed"
