"""The one exception type for mistakes a user can fix."""

from __future__ import annotations


class FinetuneError(Exception):
    """A setting, file or checkpoint the user gave cannot be used.

    The message names the thing that is wrong and how to fix it. The plugin turns it
    into a pytest usage error (command line, ini file, environment), a collection
    error (marker keywords) or a test error without a traceback (fixtures).
    """
