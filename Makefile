# The two commands a new user needs; both install what is missing first.
.PHONY: demo test test-matrix setup

setup:
	bin/setup

demo: setup
	bin/demo

test: setup
	bin/test

# The integration core under each Salt line, and a mixed pair (noxfile.py).
test-matrix: setup
	.venv/bin/nox -s core mixed
