# The test command of README.md: the Python peers' virtualenv, vet, and every
# test (unit, conformance, interop with real Python ZODB/ZEO) under -race.
# The tests that need Python are built only with the interop tag; without
# the virtualenv they fail, they never skip.
.PHONY: test venv fuzz bench

test: venv
	go vet -tags interop ./...
	go vet -tags interop,bench ./interop/
	go test -race -tags interop -timeout 25m ./...

venv:
	bash interop/setup.sh
	bash interop/setup-zeo54.sh

# Runs each fuzz target for FUZZTIME (default 1m).
FUZZTIME ?= 1m
fuzz:
	go test ./zconfig -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
