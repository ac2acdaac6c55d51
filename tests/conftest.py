"""Shared pytest plugins: real databases (SQLite, PostgreSQL) and a real Mosquitto per test."""

pytest_plugins = ["tests.fixtures.databases", "tests.fixtures.broker"]
