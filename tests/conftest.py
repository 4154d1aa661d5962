"""Import femtogpt before anything loads NumPy, so its thread settings apply (see femtogpt/__init__.py)."""
import femtogpt  # noqa: F401
