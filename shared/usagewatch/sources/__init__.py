"""One module per vendor: its API client and its mapping to UsageRecord, nothing else."""
