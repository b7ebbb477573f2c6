# The two commands a newcomer needs: `make serve` and `make test`.
.PHONY: serve build test bench tools

serve:
	go run ./cmd/plinth serve

build:
	go build -o bin/plinth ./cmd/plinth

# Runs every test: Go tests against SQLite, PostgreSQL, and the OpenAPI lint.
test:
	./scripts/test

tools:
	./scripts/tools

# PostgreSQL benchmark: 1M residents, wrk vs pgbench; writes BENCHMARKS.md.
bench:
	./bench/run
