"""Errors of the cluster backplane (the CLI turns them into one line and an exit code)."""

from __future__ import annotations


class ClusterError(Exception):
    """The broker, a site link or the worker supervisor cannot do what was asked; says what and where."""
