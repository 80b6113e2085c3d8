# wsx: the two commands are `make run` and `make test`; both install what is missing first.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
PYTHON ?= /usr/bin/python3
LISTEN ?= 127.0.0.1:7007

.PHONY: all deps configure build run test ctest pytest clean consumer lint heapcheck soak

all: build

deps:
	@bash cmake/deps.sh
	@bash cmake/criterion-mingw.sh

configure: deps
	@mkdir -p $(BUILD)
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake \
		-DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >$(BUILD)/configure.log 2>&1 \
		|| { cat $(BUILD)/configure.log; echo "wsx: cmake configure failed" >&2; exit 1; }

build: configure
	@cmake --build $(BUILD)

run: build
	@cmake/wine-run --start-server
	cmake/wine-run $(BUILD)/server/wsx-echo.exe --listen $(LISTEN)

ctest: build
	@cmake/wine-run --start-server
	cd $(BUILD) && ctest --output-on-failure

pytest: build
	@cmake/wine-run --start-server
	WSX_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest pytests -v

# Every check runs even if an earlier one fails; the target fails if any did: Criterion under Wine,
# the pytest suite, static analysis, the Criterion suites again under Wine's heap checks, a 60-second
# soak, and the installed-package consumer.
test: build
	@cmake/wine-run --start-server
	@c=0; p=0; l=0; h=0; s=0; k=0; \
	(cd $(BUILD) && ctest --output-on-failure) || c=$$?; \
	WSX_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest pytests -v || p=$$?; \
	bash cmake/lint.sh || l=$$?; \
	bash cmake/heapcheck.sh $(BUILD) || h=$$?; \
	$(PYTHON) tests/soak.py --seconds 60 --build $(BUILD) || s=$$?; \
	bash cmake/consumer.sh $(BUILD) || k=$$?; \
	echo "wsx: ctest exit $$c, pytest exit $$p, lint exit $$l, heapcheck exit $$h, soak exit $$s, consumer exit $$k"; \
	[ $$c = 0 ] && [ $$p = 0 ] && [ $$l = 0 ] && [ $$h = 0 ] && [ $$s = 0 ] && [ $$k = 0 ]

lint: deps
	@bash cmake/lint.sh

heapcheck: build
	@cmake/wine-run --start-server
	@bash cmake/heapcheck.sh $(BUILD)

# The soak and fault run (issue 9): `make soak` runs 10 minutes, `make soak SOAK_SECONDS=60` less.
SOAK_SECONDS ?= 600
soak: build
	@cmake/wine-run --start-server
	$(PYTHON) tests/soak.py --seconds $(SOAK_SECONDS) --build $(BUILD)

clean:
	rm -rf $(BUILD)

# Issue 10: install into $(BUILD)/stage, build tests/consumer against the installed package with
# find_package(wsx) and with pkg-config (static library and DLL each), run the clients under Wine
# against a wsx-echo on 127.0.0.1 port 0. See cmake/consumer.sh.
consumer: build
	@bash cmake/consumer.sh $(BUILD)

# Benchmarks (issue 8): wsx-echo against Asio, libuv (both under Wine) and native epoll, every
# workload three times, interleaved; table of medians, bench/results/bench.{json,png}.
# `make bench BENCH_QUICK=1`: one short pass for development. See bench/README.md.
BENCH_QUICK ?=
BENCH_ARGS ?=
.PHONY: bench bench-build

bench-build:
	@bash cmake/deps.sh
	@bash bench/setup.sh

bench: bench-build
	@$(PYTHON) bench/run.py $(if $(filter-out 0,$(BENCH_QUICK)),--quick) $(BENCH_ARGS)
