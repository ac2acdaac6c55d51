"""The alarm lifecycle: the pure state machine (``lifecycle``) and its database adapter."""
