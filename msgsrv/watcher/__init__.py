"""The watcher daemon: one asyncio loop, parent of every server (SPEC §3 "Process model")."""
