"""Model resolution and request routing (pure logic; providers do the I/O)."""
