"""Data that goes into a run: prompt sets (`prompts`), preference pairs (`preferences`) and the one
JSON/JSONL reader both use (`readers`: plain or gzip, every record with its file:line for errors)."""
