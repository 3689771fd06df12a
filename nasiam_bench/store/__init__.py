"""What is on disk: a result's identity, the folders and file names it lives under, claims on runs, the device's
occupancy ledger, records and checkpoints, and the genotype a head names (from a file, or its search's folder)."""
