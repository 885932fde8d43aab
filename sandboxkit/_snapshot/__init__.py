"""Pause, resume and fork of sessions: snapshots of a sandbox's files (and memory)."""
