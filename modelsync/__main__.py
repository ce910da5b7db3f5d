"""`python -m modelsync` is `modelsync`."""

from .cli.main import run

run()
