"""Sim: scenarios and a deterministic simulator of deployments, the smoke check and the demo."""
