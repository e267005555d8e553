"""cupyx of the CuPy test double."""
