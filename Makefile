# sopflow — `make demo` runs the seed SOPs end to end; `make test` runs the tests.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps build test test-asan demo bench clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# The same tests under AddressSanitizer and UBSan, in a separate folder.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSOPFLOW_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) --timeout 600

demo: build
	scripts/demo.sh $(BUILD)

# The benchmark: starts its own redis-server, nats-server, router and
# notifier; the last line is a JSON object (docs/performance.md).
BENCH_ARGS ?= --runs 2000
bench: build
	$(BUILD)/tools/sopbench/sopbench $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) var
