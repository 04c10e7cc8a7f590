"""The built-in protocol servers, one module per component (SPEC §3 "Built-in services")."""
