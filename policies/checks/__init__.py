"""The check code of each control, one module per control, looked up in policies.registry."""
