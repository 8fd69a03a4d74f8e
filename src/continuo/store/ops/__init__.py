"""SQL operations: plain functions over a SQLAlchemy ``Connection``, each run whole by the store."""
