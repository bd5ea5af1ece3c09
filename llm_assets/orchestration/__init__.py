"""The thin Dagster layer: assets, resources, checks and automation wired onto the stage modules."""
