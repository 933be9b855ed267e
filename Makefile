# postlist — see README.md.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         := bin/postlist

.PHONY: build run test test-deps lint bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/postlist

# Runs the daemon on its embedded defaults: loopback ports, database under ./var.
run: build
	./$(BIN) serve

test-deps:
	@./scripts/ensure-test-deps.sh

test: test-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Benchmarks are not tests: they print tables and are never run by make test.
bench: build test-deps
	$(GO) run ./bench/members

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzResolve -fuzztime 60s ./address/

clean:
	rm -rf bin
