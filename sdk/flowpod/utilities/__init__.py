"""Helpers users import by path, mirroring ``prefect.utilities``."""
