"""Text: BPE tokenizer training and token-block datasets. Knows nothing of Dagster."""
