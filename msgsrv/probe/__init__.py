"""msprobe: hang detection by real protocol probes (SPEC §1, reference §4)."""
