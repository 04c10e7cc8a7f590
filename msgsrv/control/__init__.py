"""The watcher's control protocol: the wire format (protocol.py) and a blocking client (client.py)."""
