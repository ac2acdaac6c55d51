"""Shared pytest plugins: real databases (SQLite, PostgreSQL), a real Mosquitto per test, and the
process's data-key ring put back after a test."""

pytest_plugins = ["tests.fixtures.databases", "tests.fixtures.broker", "tests.fixtures.keys"]
