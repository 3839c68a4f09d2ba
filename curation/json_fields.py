"""Serializer fields for the JSON objects of settings researchers hand in (filter rules, export
options): each value must already be of its JSON type (no "0.5" for 0.5, no 1 for true), an
unknown key is refused by name, and every refusal reads "<why> (got <value>)", the words the rules
and options have always answered with. `checked_json` runs a serializer of them for the services."""
from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings


class JsonObjectSerializer(serializers.Serializer):
    """A JSON object of named settings: a key it does not know is refused by name, never ignored."""

    noun = "key"  # what a key is called in the refusal: "unknown rule(s) ..."

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            self._refuse(f"must be a JSON object of {self.noun}s (got {type(data).__name__})")
        unknown = sorted(str(key) for key in data if key not in self.fields)
        if unknown:
            self._refuse(f"unknown {self.noun}(s) {', '.join(unknown)}; known: {', '.join(sorted(self.fields))}")
        return super().to_internal_value(data)

    @staticmethod
    def _refuse(message: str):
        raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]}, code="invalid")


def checked_json(serializer_class: type[JsonObjectSerializer], data: dict | None, *, key: str) -> dict:
    """`data` validated by `serializer_class`, with the defaults filled in. Raises Django's
    ValidationError under `key`, one "<name>: <why> (got <value>)" message per refused value."""
    serializer = serializer_class(data={} if data is None else data)
    if not serializer.is_valid():
        raise DjangoValidationError({key: _error_lines(serializer.errors)})
    return dict(serializer.validated_data)


def _error_lines(errors: dict) -> list[str]:
    lines = []
    for name, messages in errors.items():
        for message in messages if isinstance(messages, list) else [messages]:
            lines.append(str(message) if name == api_settings.NON_FIELD_ERRORS_KEY else f"{name}: {message}")
    return lines


class _Explained:
    """A field that takes only values of `json_types` as they are and says why it refused one."""

    json_types: tuple[type, ...] = ()

    def __init__(self, *, why: str, **kwargs):
        self.why = why
        super().__init__(**kwargs)

    def run_validation(self, data=empty):
        if data is not empty and data is not None and (
                not isinstance(data, self.json_types) or (isinstance(data, bool) and bool not in self.json_types)):
            self.refuse(data)
        try:
            return super().run_validation(data)
        except serializers.ValidationError:
            self.refuse(data)

    def refuse(self, data):
        raise serializers.ValidationError(f"{self.why} (got {data!r})", code="invalid") from None


class NumberField(_Explained, serializers.FloatField):
    json_types = (int, float)


class WholeNumberField(_Explained, serializers.IntegerField):
    json_types = (int,)


class FlagField(_Explained, serializers.BooleanField):
    json_types = (bool,)


class ChoiceOfField(_Explained, serializers.ChoiceField):
    json_types = (str,)


class TextField(_Explained, serializers.CharField):
    json_types = (str,)


class TextListField(_Explained, serializers.ListField):
    json_types = (list,)

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(), **kwargs)

    def to_internal_value(self, data):
        if not all(isinstance(item, str) for item in data):  # CharField would turn 3 into "3"
            self.refuse(data)
        return super().to_internal_value(data)


@extend_schema_field({"type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": True,
                      "exclusiveMaximum": True})
class OpenUnitIntervalField(NumberField):
    """A number strictly between 0 and 1 (a test level)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not 0 < value < 1:
            self.refuse(data)
        return value


@extend_schema_field({"oneOf": [{"type": "number", "minimum": 0, "maximum": 1, "exclusiveMaximum": True},
                                {"type": "array", "items": {"type": "string"}}]})
class ShareOrNamesField(serializers.Field):
    """A share in [0, 1) or a list of names (pseudonyms, uids)."""

    def to_internal_value(self, data):
        if isinstance(data, list):
            if not all(isinstance(item, str) for item in data):
                raise serializers.ValidationError(f"a list must hold strings (got {data!r})")
            return list(data)
        if isinstance(data, bool) or not isinstance(data, (int, float)) or not 0 <= data < 1:
            raise serializers.ValidationError(
                f"must be a share from 0 (inclusive) to 1 (exclusive), or a list (got {data!r})")
        return data

    def to_representation(self, value):
        return value
