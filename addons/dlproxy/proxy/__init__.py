"""The mitmproxy side: addons, enforcement, and every use of mitmproxy's private API."""
