"""One exit-code table for every svtree command. A leaf."""

OK = 0
FAILURE = 1  # invalid tree (compile), failed request (ctl), failed boot/critical (run)
USAGE = 2  # bad command line; `svtree run` with an invalid tree also exits 2 (README)
SIGNAL_BASE = 128  # a main command killed by signal N gives 128+N
