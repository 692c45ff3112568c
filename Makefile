# The two commands a new user needs; both install what is missing first.
.PHONY: demo test setup

setup:
	bin/setup

demo: setup
	bin/demo

test: setup
	bin/test
