"""The data_ops tests live beside their domain; the shared fixtures they use come from tests/conftest.py."""

from tests.conftest import project  # noqa: F401 - a fixture, found by name
