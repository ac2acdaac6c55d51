"""Sending: message texts, the outbox sender, and what comes back from the provider."""
