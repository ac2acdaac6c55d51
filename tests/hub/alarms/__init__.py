"""Tests of the alarm lifecycle and its database adapter."""
