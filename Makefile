# cacheclip — see README.md. Every target works offline once Go modules are cached.
GO ?= go
BIN := bin/cacheclip

.PHONY: all build test test-generic demo bench eval lint fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/cacheclip

# The whole test suite, then the kernels again on the portable pure-Go path.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	CACHECLIP_KERNELS=generic $(GO) test -count=1 -timeout 10m ./kernels/... ./model/...
	# Fuzz the GGUF parser for a bounded time (seed corpus in model/gguf/testdata/fuzz).
	$(GO) test -run '^$$' -fuzz FuzzGGUFParse -fuzztime 15s ./model/gguf/

# SmolLM2-135M-Instruct when it can be fetched (scripts/fetch-smollm2.sh), else
# the test-bed pair; the demo says which in one line.
demo: build
	@scripts/fetch-smollm2.sh >/dev/null 2>&1 || true
	./$(BIN) demo --workdir out/demo

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 60m ./kernels/ ./model/ ./kvshards/... ./prefill/... ./pipeline/...

eval: build
	./$(BIN) eval --config eval/default.yaml --out docs/eval

lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet ./...

fmt:
	gofmt -w .

clean:
	rm -rf bin out
