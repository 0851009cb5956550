"""The real-tool oracle corpus: rule sets written by ufw, firewalld, iptables-nft (as dockerd
writes them), Debian's nftables examples and iptables-legacy, each asked of the kernel and of
the engine with the same crafted packets.

``netlab`` builds the throwaway namespaces and observes the kernel's verdict per hook,
``corpus`` runs the real tools inside them, ``probes`` derives the packets from a rule set's
own literals, ``differential`` compares the two answers and records them under
tests/data/oracle/NAME/.
"""
