"""aigw's model library: the catalog and the per-family presets (data only; see README.md here).

Installed as the package `aigw.models` (pyproject's package-dir maps it to this folder)."""
