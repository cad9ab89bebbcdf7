"""Backends behind the Provider protocol; built-ins register through the `aigw.providers` entry points."""
