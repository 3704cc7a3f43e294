# kiln: the entry points a newcomer uses. `make serve` installs everything and serves a real
# model on an OpenAI-compatible API; `make run` generates text with it; `make test` runs
# every test. The build itself is CMake (CMakeLists.txt).
BUILD ?= build
JOBS ?= $(shell nproc)
PY := .venv/bin/python
PROMPT ?= The three primary colors are
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: all build run serve test unit sanitize fuzz pytest format lint clean bootstrap

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

bootstrap:
	@scripts/bootstrap

# Install, fetch the default model (SmolLM2-135M-Instruct) and stream a continuation.
run: bootstrap build
	@model=$$($(PY) scripts/fetch-model smollm2-135m-instruct) && \
	  $(BUILD)/kiln generate --model-path "$$model" --prompt "$(PROMPT)" -n 64 --temperature 0

# Install, fetch the default model and serve it at http://$(HOST):$(PORT)/v1 until Ctrl-C.
serve: bootstrap build
	@model=$$($(PY) scripts/fetch-model smollm2-135m-instruct) && \
	  exec $(BUILD)/kiln serve --model-path "$$model" --host $(HOST) --port $(PORT)

# Every test: unit tests and the end-to-end server tests (release and ASan+UBSan), the
# Python reference tests, a short fuzz run of every target.
test: bootstrap unit sanitize fuzz pytest

unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

sanitize:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)
	@echo "end-to-end tests against the ASan+UBSan server:"
	@KILN_BIN=build-asan/kiln ASAN_OPTIONS=detect_leaks=1 $(PY) -m pytest -q tests/e2e

pytest: build
	@$(PY) -m pytest -q tests/python tests/e2e

FUZZ_SECONDS ?= 30
FUZZERS := gguf jinja request safetensors
fuzz:
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZERS))
	@for f in $(FUZZERS); do \
	  $(PY) tests/fuzz/make_corpus.py $$f build-fuzz/corpus/$$f >/dev/null || exit 1; \
	  mkdir -p build-fuzz/work/$$f; echo "fuzz_$$f:"; \
	  build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -print_final_stats=0 \
	    build-fuzz/work/$$f build-fuzz/corpus/$$f > build-fuzz/fuzz_$$f.log 2>&1; rc=$$?; \
	  tail -n 3 build-fuzz/fuzz_$$f.log; \
	  if [ $$rc -ne 0 ]; then echo "fuzz_$$f failed: see build-fuzz/fuzz_$$f.log"; exit 1; fi; \
	done

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

lint:
	@cppcheck --quiet --error-exitcode=1 --enable=warning,portability --std=c11 \
	  --suppress=missingIncludeSystem -I include -I src src

clean:
	rm -rf build build-asan build-fuzz
