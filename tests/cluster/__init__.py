"""Test-cluster helpers: the node agent that stands in for the kubelet, and its parts."""
