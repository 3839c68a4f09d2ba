"""Why an export stops: a problem its owner can fix (the message says what)."""


class ExportError(Exception):
    """Final: retrying the same export fails the same way until the input or destination changes."""
