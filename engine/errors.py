"""User-facing errors: the CLI prints them as one `error:` line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user (file missing, corrupt, no face...). Never a traceback."""
