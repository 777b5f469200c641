"""The PSA link: the adapter contract (`contract`) and its implementations (`connectwise`); docs/psa.md."""
