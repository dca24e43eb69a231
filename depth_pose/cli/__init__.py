"""Command-line entry points (thin Hydra wrappers over plain functions)."""
