"""Data that goes into a run: prompt sets (`prompts`), preference pairs (`preferences`), the JSON/JSONL reader both
use (`readers`: plain or gzip, every record with its file:line for errors) and tabular sources (`tables`: Parquet,
Arrow, `datasets` folders, hf:NAME[:SPLIT]; `optune export` writes them too, optune.report.export)."""
