"""cupyx.scipy of the CuPy test double."""
