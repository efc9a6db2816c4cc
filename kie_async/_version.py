"""The version of kie-async, in one place."""

__version__ = "0.2.0"
