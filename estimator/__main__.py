"""``python -m estimator`` runs the gpucost CLI."""

from .cli import run

run()
