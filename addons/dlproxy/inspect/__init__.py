"""Inspection: scanning messages, deciding by policy, redacting, and incremental stream windows.

Pure like `engine/` and `extract/`: no mitmproxy, so `dlproxy scan` and the proxy share it.
"""
