"""p06_contrastive: Contrastive text embeddings + FAISS semantic search."""

__version__ = "0.1.0"
