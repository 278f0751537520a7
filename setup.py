"""Kept for tools that still call ``setup.py``; the package is described in ``pyproject.toml`` (PEP 621)."""
from setuptools import setup

setup()
