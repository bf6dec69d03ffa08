"""Browser viewer for endogs reconstructions (nerfview/viser)."""
