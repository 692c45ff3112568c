# The two commands a new user needs; both install what is missing first.
.PHONY: demo test test-matrix setup

setup:
	bin/setup

demo: setup
	bin/demo

test: setup
	bin/test

# The integration core under the Salt lines `make test` does not run
# (noxfile.py; `nox -s mixed` runs a 3008 master with a 3006 minion).
test-matrix: setup
	.venv/bin/nox -s "core(line='3006')" "core(line='3007')"
