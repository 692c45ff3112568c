# The two commands a new user needs; both install what is missing first.
.PHONY: demo test test-matrix setup

setup:
	bin/setup

demo: setup
	bin/demo

test: setup
	bin/test

# The integration core under the Salt lines `make test` does not run, and
# a 3008 master with a 3006 minion (noxfile.py).
test-matrix: setup
	.venv/bin/nox -s "core(line='3006')" "core(line='3007')" mixed
