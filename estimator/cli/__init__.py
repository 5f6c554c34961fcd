"""The ``gpucost`` command line: the only door that parses flags, prints or exits."""

from estimator.cli.app import app, main, run

__all__ = ["app", "main", "run"]
