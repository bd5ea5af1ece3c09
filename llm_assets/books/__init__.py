"""Books: the book list, the Gutenberg client and the cleaner. Knows nothing of Dagster."""
