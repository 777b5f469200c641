"""usagewatch: licence usage collection for MSPs and resellers."""

__version__ = "0.1.0"
