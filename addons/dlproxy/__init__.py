"""dlproxy: a DLP inspection proxy that finds checksummed credentials in live traffic."""

__version__ = "0.1.0"
