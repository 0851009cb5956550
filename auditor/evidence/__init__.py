"""The evidence store (hashed, chained artifacts), redaction, signing and verification."""
