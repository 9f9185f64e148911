"""Data that goes into and out of a run: prompt sets (`prompts`), preference pairs (`preferences`), the JSON/JSONL
reader both use (`readers`: plain or gzip, every record with its file:line for errors), tabular sources (`tables`:
Parquet, Arrow, `datasets` folders, hf:NAME[:SPLIT]) and the export in TRL's preference format (`export`)."""
