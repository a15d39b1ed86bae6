"""The ``glgeo`` command line (installed as ``glgeo.cli``): click commands that parse their
options, call one library function and report."""
