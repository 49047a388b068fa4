# Two entry points a new user needs: `make example` and `make test`. Both install the Debian
# packages calibc builds against when they are missing.

SWIFT_BUILD = swift build -c release
CALIBC = .build/release/calibc
DEPS = libclang-dev libomp-dev
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps install example bundled test kernels golden bench bench-calibrate bench-scale fuzz sanitize test-python diffusers bench-peers

deps:
	@dpkg -s $(DEPS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEPS); }

# Puts calibc on the PATH: `make install` (to /usr/local/bin) or `make install PREFIX=$$HOME/.local`.
# The binary finds the Swift runtime through its RUNPATH (the toolchain's lib/swift/linux) and
# libclang/libomp from Debian's LLVM 14, so it runs wherever those stay installed. SwiftPM
# resource bundles (*.resources), if a target ever has one, are looked up beside the binary.
PREFIX ?= /usr/local
install: deps
	$(SWIFT_BUILD) --product calibc
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(CALIBC) $(DESTDIR)$(PREFIX)/bin/calibc
	@for bundle in .build/release/*.resources; do \
		[ -d "$$bundle" ] || continue; rm -rf "$(DESTDIR)$(PREFIX)/bin/$$(basename $$bundle)"; cp -R "$$bundle" $(DESTDIR)$(PREFIX)/bin/; \
	done
	@echo "installed $(DESTDIR)$(PREFIX)/bin/calibc"; command -v calibc >/dev/null || echo "add $(PREFIX)/bin to PATH"

# The whole pipeline on synthetic video attention: record (synth) → calibrate on two prompts,
# check on a third → compile → run the kernels on the held-out prompt against dense.
OUT = out
example: deps
	$(SWIFT_BUILD) --product calibc
	$(SWIFT_BUILD) --product calib-run
	$(CALIBC) synth -o $(OUT)/recordings --prompts 3
	$(CALIBC) calibrate $(OUT)/recordings/prompt0.safetensors $(OUT)/recordings/prompt1.safetensors \
		--holdout $(OUT)/recordings/prompt2.safetensors -o $(OUT)/masks.json
	$(CALIBC) compile $(OUT)/masks.json -o $(OUT)/kernels --shared
	.build/release/calib-run $(OUT)/masks.json --library $(OUT)/kernels/libcalibkernels.so \
		--recording $(OUT)/recordings/prompt2.safetensors

# The hand-written examples/masks.json through the kernels linked into the package.
bundled: kernels
	$(SWIFT_BUILD) --product calib-run
	.build/release/calib-run examples/masks.json

test: deps
	swift test --disable-swift-testing

# Regenerate the committed kernels of the example (a test fails while they are stale).
kernels: deps
	$(SWIFT_BUILD) --product calibc
	$(CALIBC) compile examples/masks.json -o generated/CalibKernels

# Regenerate the golden IR dumps the pass tests compare against.
golden: deps
	$(SWIFT_BUILD) --product calibc
	$(CALIBC) ir examples/masks.json --print-after parse > Tests/CalibPassesTests/Fixtures/example.parse.ir
	$(CALIBC) ir examples/masks.json > Tests/CalibPassesTests/Fixtures/example.ir

# Kernel speed: dense against the measured FMA peak, bf16, sparse efficiency, reuse cost (docs/performance.md).
bench: deps
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench kernels

# A Wan 2.1 14B-size mask set: file size, parse, compile time and memory, C build, merging, stats.
bench-scale: deps
	$(SWIFT_BUILD) --product calibc
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench scale

# Calibration throughput, peak memory, and the sweeps behind the defaults in docs/calibration.md.
bench-calibrate: deps
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench calibrate

# libFuzzer over the masks.json frontend, the safetensors reader, recordings (their size
# arithmetic) and calibrate's per-head decisions on adversarial masses, seeded from Fuzz/corpus;
# a crash leaves its input in .build/fuzz-artifacts and fails the target, and so does a run
# that reports no coverage counters (SwiftPM's --sanitize fuzzer alone does not instrument).
FUZZ_SECONDS = 60
FUZZ_BUILD = CALIBC_FUZZ=1 swift build --build-path .build/fuzz --sanitize fuzzer --sanitize address \
	-Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp
fuzz: deps
	$(FUZZ_BUILD) --product fuzz-masks
	$(FUZZ_BUILD) --product fuzz-safetensors
	$(FUZZ_BUILD) --product fuzz-recording
	$(FUZZ_BUILD) --product fuzz-calibrate
	@set -e; for target in masks safetensors recording calibrate; do \
		mkdir -p .build/fuzz-corpus/$$target .build/fuzz-artifacts; \
		.build/fuzz/debug/fuzz-$$target .build/fuzz-corpus/$$target Fuzz/corpus/$$target -max_total_time=$(FUZZ_SECONDS) \
			-rss_limit_mb=4096 -artifact_prefix=.build/fuzz-artifacts/$$target- -print_final_stats=1 \
			> .build/fuzz-$$target.log 2>&1 || { tail -40 .build/fuzz-$$target.log; exit 1; }; \
		grep -q "inline 8-bit counters" .build/fuzz-$$target.log || { echo "fuzz-$$target: no coverage instrumentation"; exit 1; }; \
		echo "fuzz-$$target: $$(grep -E '^Done' .build/fuzz-$$target.log), $$(grep -oE 'cov: [0-9]+' .build/fuzz-$$target.log | tail -1) edges, no crash"; \
	done

# Generated kernels under AddressSanitizer + UndefinedBehaviorSanitizer on odd shapes
# (Tests/Sanitize: N = 1, N = block - 1, a partial last block with reuse), AVX-512 and portable.
OMP = -fopenmp -idirafter /usr/lib/llvm-14/lib/clang/14.0.6/include -L/usr/lib/llvm-14/lib -lomp -Wl,-rpath,/usr/lib/llvm-14/lib
sanitize: deps
	$(SWIFT_BUILD) --product calibc
	@set -e; for masks in Tests/Sanitize/*.json; do \
		dir=.build/sanitize/$$(basename $$masks .json); \
		$(CALIBC) compile $$masks -o $$dir --force > /dev/null; \
		for isa in "" -mno-avx512f; do \
			clang -std=c11 -O1 -g -march=native $$isa -fsanitize=address,undefined -fno-sanitize-recover=all \
				-I $$dir/include $$dir/calib_kernels.c $$dir/calib_schedule.c Tests/Sanitize/harness.c \
				$(OMP) -lpthread -lm -o $$dir/harness; \
			echo "$$masks $${isa:-(AVX-512)}: $$($$dir/harness)"; \
		done; \
	done

# The PyTorch/diffusers bridge (examples/diffusers), in a venv of CPU torch and diffusers from PyPI.
PY_DEPS = torch==2.13.0+cpu diffusers==0.42.1 pytest==9.2.0
.venv/ok:
	python3 -m venv .venv
	.venv/bin/pip install -q $(PY_DEPS)
	touch $@

test-python: deps .venv/ok
	$(SWIFT_BUILD) --product calibc
	.venv/bin/python -m pytest -q Tests/python

# record → calibrate → compile → run on a small random diffusers Wan.
diffusers: deps .venv/ok
	$(SWIFT_BUILD) --product calibc
	.venv/bin/python examples/diffusers/end_to_end.py

# Our kernels beside torch's SDPA and flex_attention on the plans and held-out inputs of `make example`.
bench-peers: example .venv/ok
	.venv/bin/python examples/bench_peers.py out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors
