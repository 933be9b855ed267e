# postlist — see README.md.
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         := bin/postlist

.PHONY: build run test test-deps lint bench torture fuzz clean

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

# Benchmarks are not tests: they print tables and are never run by make
# test. docs/benchmarks.md says what each measures and the latest figures.
bench: build test-deps
	$(GO) run ./bench/members
	$(GO) run ./bench/lmtp
	$(GO) run ./bench/deliver
	$(GO) run ./bench/flow
	$(GO) test ./milter -run '^$$' -bench 'RcptDecision|RcptRoundTrip|IndexMemory' -benchtime 2s
	$(GO) test ./index -run '^$$' -bench Reload -benchtime 3x
	$(GO) test ./milter -run '^$$' -bench PostfixAcceptRate -benchtime 1x -timeout 10m
	$(GO) run ./bench/hookup

# The long reliability campaigns (50 SIGKILL cycles, 60 s of load, every
# smart-host fault); make test runs their short variants.
torture: test-deps
	$(GO) test -race -count=1 -timeout 60m -v ./reliability/ -torture

# Every fuzz target in turn, FUZZTIME each; a failure stops the run and
# leaves its input under the package's testdata/fuzz/.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin
