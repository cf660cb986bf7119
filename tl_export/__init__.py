"""What export_tl.py builds: a TransformerLens HookedTransformer computing one of our models' function."""

from tl_export.model import export_tl, hooked_transformer, load_exported, untranslatable

__all__ = ["export_tl", "hooked_transformer", "load_exported", "untranslatable"]
