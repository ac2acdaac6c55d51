"""Storage: the SQLAlchemy 2 data model, engines and sessions, and repository functions."""
