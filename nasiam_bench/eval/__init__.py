"""How a representation is judged: kNN and linear probes on frozen features, and the label-free measures."""
