"""textdesk: a self-hostable peer-to-peer SMS platform."""

__version__ = "0.1.0"
