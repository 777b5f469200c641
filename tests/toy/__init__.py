"""A toy fourth vendor, registered only in tests: the proof that docs/adding-a-vendor.md is the whole list.

`source.py` is what a vendor package holds (account model, client, mapping, source), `simulator.py` what a
vendor simulator holds. Nothing in shared/ or functions/ names it.
"""
