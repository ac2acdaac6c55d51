"""Simulated devices, homes and their command-line tool (``carehub-sim``)."""
