"""The one exception the CLI turns into a one-line message and a non-zero exit."""


class KitError(Exception):
    """A problem the instructor can fix; the message says what is wrong and how to fix it."""
