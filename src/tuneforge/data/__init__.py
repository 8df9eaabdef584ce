"""Data layer: readers, splits and the split audit."""
