"""Integration tier: tests against the test cluster started by scripts/cluster."""
