"""Offline-dataset tooling: behaviour policies, mixtures, collection, scores, D4RL I/O."""
