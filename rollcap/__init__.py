"""rollcap: long-running rolling packet capture with verified offload."""

__version__ = "0.2.0"
