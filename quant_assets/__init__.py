"""quant_assets: a Dagster asset graph for a crypto market-data lake. Importing it starts nothing."""

__version__ = "0.1.0"
