//! serpent: Python literal expressions, byte-compatible with Python's `serpent` 1.43.
