"""Forms for the JSON settings researchers hand in (a filter run's rules, an export's options), drawn
from the serializers the API validates them with: every field of the serializer becomes a labelled
control (a choice a select, a flag a checkbox, a number a number input with its bounds, a nullable
field an empty value meaning null / off), grouped in fieldsets, so a new rule or option appears in
the form without a template edit. What the controls post is turned back into the JSON values the
serializer takes; the serializer's own messages come back next to the field they name. A JSON
textarea ("advanced") stays: when it holds text, it replaces the controls."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from rest_framework.fields import empty

from curation.json_fields import (
    ChoiceOfField,
    FlagField,
    NumberField,
    OpenUnitIntervalField,
    ShareOrNamesField,
    TextField,
    TextListField,
    WholeNumberField,
)

NON_FIELD = "non_field_errors"  # DRF's key for an error of the whole object (an unknown key)
OTHER_GROUP = "Other settings"
_WHOLE = re.compile(r"[+-]?\d+")
_NAMES_SPLIT = re.compile(r"[,\n]")


@dataclass
class Control:
    """One serializer field as the template draws it. `value` is the text the control shows (the
    default, or what the person typed); `names` the list half of a share-or-names field."""

    key: str  # the serializer field's name, the JSON key
    name: str  # the posted form's key
    kind: str  # select, checkbox, number, text, list, share, json
    label: str
    help: str
    default: str
    value: str = ""
    names: str = ""
    checked: bool = False
    nullable: bool = False
    choices: list[tuple[str, str]] = field(default_factory=list)
    min: str = ""
    max: str = ""
    step: str = "any"
    formats: tuple[str, ...] = ()  # export options: the formats that read it (empty: every format)
    errors: list[str] = field(default_factory=list)
    input_id: str = ""
    suggestions: list[str] = field(default_factory=list)


def _kind(serializer_field) -> str:
    if isinstance(serializer_field, ChoiceOfField):
        return "select"
    if isinstance(serializer_field, FlagField):
        return "checkbox"
    if isinstance(serializer_field, (NumberField, WholeNumberField)):
        return "number"
    if isinstance(serializer_field, ShareOrNamesField):
        return "share"
    if isinstance(serializer_field, TextListField):
        return "list"
    if isinstance(serializer_field, TextField):
        return "text"
    return "json"  # a field of a kind this module does not know still gets a control: its JSON value


def _default_of(serializer_field):
    """The field's default as a JSON value (a callable default called; no default is null)."""
    default = serializer_field.default
    if default is empty:
        return None
    return default() if callable(default) else default


def _shown(value) -> str:
    """A JSON value as a control shows it: null is an empty box, a list its names."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _number(text: str):
    """The JSON number a number input's text means, or the text itself (the serializer refuses it
    with its own message)."""
    if _WHOLE.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _names(text: str) -> list[str]:
    return [name.strip() for name in _NAMES_SPLIT.split(text) if name.strip()]


def _formats_read(help_text: str, formats: tuple[str, ...]) -> tuple[str, ...]:
    """The formats an option's help text opens with ("pickapic, trl: ..."): the ones that read it."""
    head, sep, _ = help_text.partition(":")
    named = tuple(word.strip() for word in head.split(","))
    return named if sep and formats and named and all(word in formats for word in named) else ()


class SettingsForm:
    """The controls of one JSON-settings serializer (`serializer_class`), named `<prefix>.<field>`
    in the posted form, with the advanced JSON textarea named `<prefix>_json`.

    `groups` lists (legend, field names); fields in no group land in a last "Other settings"
    fieldset. `formats`, for export options, lets each option say which formats read it."""

    def __init__(self, serializer_class, *, prefix: str, groups: list[tuple[str, list[str]]],
                 formats: tuple[str, ...] = (), suggestions: dict[str, list[str]] | None = None):
        self.fields = serializer_class().fields
        self.prefix = prefix
        self.groups = groups
        self.advanced = ""  # the JSON textarea's text
        self.advanced_errors: list[str] = []
        self.errors: list[str] = []  # errors of the whole object, outside the advanced box
        self.controls = {name: self._control(name, f, formats, (suggestions or {}).get(name, []))
                         for name, f in self.fields.items()}

    def _control(self, name, serializer_field, formats, suggestions) -> Control:
        kind = _kind(serializer_field)
        default = _default_of(serializer_field)
        control = Control(
            key=name, name=f"{self.prefix}.{name}", kind=kind, label=name.replace("_", " ").capitalize(),
            help=str(serializer_field.help_text or ""),
            default="null" if default is None else json.dumps(default) if kind in ("json", "list") else _shown(default),
            nullable=bool(getattr(serializer_field, "allow_null", False)),
            formats=_formats_read(str(serializer_field.help_text or ""), formats),
            input_id=f"{self.prefix}-{name}", suggestions=suggestions)
        if kind == "select":
            control.choices = [(str(key), str(label)) for key, label in serializer_field.choices.items()]
        if kind == "number":
            control.min = _shown(getattr(serializer_field, "min_value", None))
            control.max = _shown(getattr(serializer_field, "max_value", None))
            if isinstance(serializer_field, OpenUnitIntervalField):
                control.min, control.max = "0", "1"
            control.step = "1" if isinstance(serializer_field, WholeNumberField) else "any"
        if kind == "share":
            control.min, control.max = "0", "1"
        self._show(control, default)
        return control

    @staticmethod
    def _show(control: Control, value) -> None:
        if control.kind == "checkbox":
            control.checked = bool(value)
        elif control.kind == "share" and isinstance(value, list):
            control.value, control.names = "", _shown(value)
        elif control.kind == "json":
            control.value = json.dumps(value)
        else:
            control.value = _shown(value)

    # --- what was posted -----------------------------------------------------------------
    def bind(self, post):
        """Keep what `post` holds in the controls (shown again on an error), and return the JSON
        the serializer is to check: the advanced box's, parsed, when it holds text, else the
        controls' values. A box that is not JSON is recorded as its error, and None returned."""
        for control in self.controls.values():
            key = control.name
            if control.kind == "checkbox":
                control.checked = key in post
            else:
                control.value = post.get(key, "")
                control.names = post.get(f"{key}.names", "")
        self.advanced = post.get(f"{self.prefix}_json", "").strip()
        if self.advanced:
            try:
                return json.loads(self.advanced)
            except ValueError as error:
                self.advanced_errors.append(f"not valid JSON: {error}")
                return None
        return {name: self._value(control) for name, control in self.controls.items()}

    @staticmethod
    def _value(control: Control):
        text = control.value.strip()
        if control.kind == "checkbox":
            return control.checked
        if control.kind == "share" and control.names.strip():
            return _names(control.names)
        if not text and control.nullable:
            return None
        if control.kind in ("number", "share"):
            return _number(text) if text else text
        if control.kind == "list":
            return _names(text)
        if control.kind == "json":
            try:
                return json.loads(text)
            except ValueError:
                return text
        return text

    def add_errors(self, errors) -> None:
        """Place the serializer's `errors` (a dict of field: messages, or a list) next to the field
        each names; in the advanced box when that was what the serializer read."""
        if not isinstance(errors, dict):
            errors = {NON_FIELD: errors}
        for name, messages in errors.items():
            messages = [str(m) for m in (messages if isinstance(messages, list) else [messages])]
            if self.advanced:
                self.advanced_errors += [m if name == NON_FIELD else f"{name}: {m}" for m in messages]
            elif name in self.controls:
                self.controls[name].errors += messages
            else:
                self.errors += messages

    def add_service_errors(self, messages: list[str]) -> None:
        """Place a service's "<field>: <why>" messages next to the field named, like the serializer's."""
        for message in messages:
            name, sep, why = message.partition(": ")
            if sep and name in self.controls:
                self.add_errors({name: [why]})
            else:
                self.add_errors([message])

    # --- what the template reads ---------------------------------------------------------
    @property
    def fieldsets(self) -> list[tuple[str, list[Control]]]:
        placed = {name for _, names in self.groups for name in names}
        sets = [(legend, [self.controls[n] for n in names if n in self.controls]) for legend, names in self.groups]
        sets.append((OTHER_GROUP, [c for n, c in self.controls.items() if n not in placed]))
        return [(legend, controls) for legend, controls in sets if controls]

    @property
    def error_list(self) -> list[tuple[str, str, str]]:
        """Every error as (the id of the control it belongs to, its label, the message)."""
        rows = [(c.input_id, c.label, m) for c in self.controls.values() for m in c.errors]
        rows += [(f"{self.prefix}-json", "JSON", m) for m in self.advanced_errors]
        rows += [(f"{self.prefix}-fields", "Settings", m) for m in self.errors]
        return rows

    @property
    def has_errors(self) -> bool:
        return bool(self.error_list)

    @property
    def advanced_open(self) -> bool:
        return bool(self.advanced or self.advanced_errors)

    @property
    def defaults_json(self) -> str:
        return json.dumps({name: _default_of(f) for name, f in self.fields.items()}, indent=1)


def place_errors(errors, *, form: SettingsForm, key: str) -> dict[str, list[str]]:
    """Hand `form` the errors under `key` (a serializer's nested errors, or a service's
    "<field>: <why>" lines) and return the others, by the name of the field they concern.
    `errors` is a serializer's errors or a Django ValidationError."""
    if hasattr(errors, "error_dict"):
        errors = errors.message_dict
    elif hasattr(errors, "messages"):
        errors = {NON_FIELD: errors.messages}
    rest = {}
    for name, messages in errors.items():
        if name == key and isinstance(messages, dict):
            form.add_errors(messages)
        elif name == key:
            form.add_service_errors([str(m) for m in messages] if isinstance(messages, list) else [str(messages)])
        else:
            rest[name] = [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
    return rest


# How the pages group the fields; a field in no group is still drawn, under "Other settings".
RULE_GROUPS = [
    ("Consensus", ["aspect", "consensus", "ties", "tie_threshold"]),
    ("Who is left out", ["exclude_position_biased", "position_bias_p", "min_rater_agreement", "min_gold_accuracy",
                         "min_gold_answers", "suspend_excluded_raters"]),
    ("What is dropped", ["min_judgments", "min_confidence", "drop_ties", "drop_likely_wrong", "likely_wrong_pct",
                         "ambiguous_pct", "check_image_files"]),
    ("Report", ["bootstrap_resamples", "seed"]),
]
OPTION_GROUPS = [
    ("What is exported", ["aspect", "rows", "source", "aspects"]),
    ("Images", ["images", "image_max_side"]),
    ("Held-out splits", ["unseen_people", "unseen_images", "seed"]),
    ("Files", ["rows_per_shard", "row_group_rows", "license"]),
]


def rules_form(*, project) -> SettingsForm:
    """The filter-run rules of FilterRulesSerializer, the project's aspects offered for `aspect`."""
    from curation.rules import FilterRulesSerializer

    return SettingsForm(FilterRulesSerializer, prefix="rules", groups=RULE_GROUPS,
                        suggestions={"aspect": ["overall", *project.aspect_keys]})


def options_form(*, project) -> SettingsForm:
    """The export options of ExportOptionsSerializer, each saying which formats read it."""
    from curation.exports.options import FORMATS, ExportOptionsSerializer

    return SettingsForm(ExportOptionsSerializer, prefix="options", groups=OPTION_GROUPS, formats=FORMATS,
                        suggestions={"aspect": ["overall", *project.aspect_keys]})
