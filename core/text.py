"""Text PostgreSQL can store. Text and jsonb columns refuse a NUL, and a string holding an unpaired
surrogate (JSON can write one: "\\ud800") cannot be encoded as UTF-8 at all. DRF's CharField
refuses both; free-form JSON (dicts and lists stored as they are) is checked with this."""
import re

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def holds_unstorable_text(value) -> bool:
    """Whether a string anywhere in `value` (dict keys included, at any depth) holds a NUL or an
    unpaired surrogate."""
    stack = [value]
    while stack:  # iterative: deeply nested JSON must not exhaust the stack
        value = stack.pop()
        if isinstance(value, str):
            if UNSTORABLE.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return False
