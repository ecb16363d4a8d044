"""Embeddings and vector search."""
