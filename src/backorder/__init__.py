"""backorder: order management with first-class backorder handling."""

__version__ = "0.1.0"
