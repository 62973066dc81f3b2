"""The N2D2 INI dialect: text -> typed, validated settings with source lines."""

from n2q.config.globals import GlobalSettings, read_globals
from n2q.config.model import REQUIRED, Config, Entry, Section
from n2q.config.parser import load_config

__all__ = ["REQUIRED", "Config", "Entry", "GlobalSettings", "Section", "load_config",
           "read_globals"]
