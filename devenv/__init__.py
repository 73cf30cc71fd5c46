"""devenv: bring up a developer environment from a declared dependency graph."""

__version__ = "0.1.0"
