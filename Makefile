# The two commands a newcomer needs: `make serve` and `make test`.
.PHONY: serve build test bench tools lambda

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

# AWS Lambda (provided.al2023, arm64): bin/lambda/plinth/bootstrap serves the
# API and the background function (handler "api" or "background"),
# bin/lambda/authorizer/bootstrap the API Gateway authorizer.
lambda:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -o bin/lambda/plinth/bootstrap ./cmd/plinth
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -o bin/lambda/authorizer/bootstrap ./cmd/plinth-authorizer
