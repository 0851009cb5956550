"""Topology: the graph of hosts, networks, routes, tunnels and compiled firewalls."""
