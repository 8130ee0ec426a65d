"""Benchmarks of slatestream (not part of the test run): `python -m bench` runs them all."""
