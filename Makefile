# cacheclip — see README.md. Every target works offline once Go modules are cached.
GO ?= go
BIN := bin/cacheclip

.PHONY: all build test test-generic demo bench eval lint fmt clean fuzz

all: build

build:
	$(GO) build -o $(BIN) ./cmd/cacheclip

# The whole test suite, then the kernels again on the portable pure-Go path.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m ./...
	CACHECLIP_KERNELS=generic $(GO) test -count=1 -timeout 10m ./kernels/... ./model/...

# Every parser of files a user (or an attacker) can hand the tool, fuzzed for
# FUZZTIME each from the committed seed corpora (testdata/fuzz): 0 panics, no
# hang. The minimisation limit keeps new inputs from stalling a short run.
FUZZTIME ?= 10s
FUZZ_TARGETS := \
	./model/safetensors:FuzzParse \
	./model:FuzzParseConfig \
	./model/tokenizer:FuzzLoadHF \
	./jobs:FuzzQuestions \
	./jobs:FuzzCorpus \
	./jobs:FuzzSpecFile \
	./kvshards:FuzzParse \
	./kvshards:FuzzHeaderFields \
	./kvshards:FuzzDamage
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 50x $$pkg; \
	done

demo: build
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
