"""cupy.cuda.compiler of the test double."""


class CompileException(Exception):
    pass
