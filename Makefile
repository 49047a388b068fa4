# Two entry points a new user needs: `make example` and `make test`. Both install the Debian
# packages calibc builds against when they are missing.

SWIFT_BUILD = swift build -c release
CALIBC = .build/release/calibc
DEPS = libclang-dev libomp-dev
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps install example bundled test kernels golden bench bench-calibrate bench-state bench-scale fuzz sanitize test-python diffusers bench-peers calibrate-gpu-sources

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
		--holdout $(OUT)/recordings/prompt2.safetensors -o $(OUT)/masks.json --report $(OUT)/report.html
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
	$(CALIBC) compile examples/masks.json -o generated/CalibKernelsCUDA --target cuda

# Regenerate the golden IR dumps the pass tests compare against.
# Per-pass fixtures: `calibc opt <pass>.before.ir --passes=<pass>` (read the diff before committing).
PASS_FIXTURES = Tests/CalibPassesTests/Fixtures/passes
golden: deps
	$(SWIFT_BUILD) --product calibc
	$(CALIBC) ir examples/masks.json --print-after parse > Tests/CalibPassesTests/Fixtures/example.parse.ir
	$(CALIBC) ir examples/masks.json > Tests/CalibPassesTests/Fixtures/example.ir
	@for pass in merge-runs collapse-reuse dedupe reorder chunk; do \
		$(CALIBC) opt $(PASS_FIXTURES)/$$pass.before.ir --passes=$$pass > $(PASS_FIXTURES)/$$pass.after.ir; \
	done
	$(CALIBC) opt $(PASS_FIXTURES)/merge-similar.before.ir --passes=merge-similar --merge-tolerance 0.2 \
		> $(PASS_FIXTURES)/merge-similar.after.ir

# Kernel speed: dense against the measured FMA peak, bf16, sparse efficiency, reuse cost (docs/performance.md).
bench: deps
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench kernels

# A Wan 2.1 14B-size mask set: file size, parse, compile time and memory, C build, merging, stats.
bench-scale: deps
	$(SWIFT_BUILD) --product calibc
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench scale

# Calibration throughput, peak memory, the sweeps behind the defaults in docs/calibration.md
# (constant thresholds against --mass-schedule wan per step), streaming states against the batch
# path, and the Wan 2.1 1.3B 480p sequence (32,760 tokens; 1 layer × 6 heads × 1 step, 2 prompts):
# 8 to 13 minutes on the shared 2-core development machine, depending on its load.
bench-calibrate: deps
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench calibrate

# The calibration state's size after folding 1, 2, 4, 8 and 16 synthetic prompts, without and
# with retirement, extrapolated to Wan 2.1 14B (docs/calibration.md section 8): about 2 minutes.
bench-state: deps
	$(SWIFT_BUILD) --product calib-bench
	.build/release/calib-bench state-size

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
	$(FUZZ_BUILD) --product fuzz-ir
	@set -e; for target in masks safetensors recording calibrate ir; do \
		mkdir -p .build/fuzz-corpus/$$target .build/fuzz-artifacts; \
		.build/fuzz/debug/fuzz-$$target .build/fuzz-corpus/$$target Fuzz/corpus/$$target -max_total_time=$(FUZZ_SECONDS) \
			-rss_limit_mb=4096 -artifact_prefix=.build/fuzz-artifacts/$$target- -print_final_stats=1 \
			> .build/fuzz-$$target.log 2>&1 || { tail -40 .build/fuzz-$$target.log; exit 1; }; \
		grep -q "inline 8-bit counters" .build/fuzz-$$target.log || { echo "fuzz-$$target: no coverage instrumentation"; exit 1; }; \
		echo "fuzz-$$target: $$(grep -E '^Done' .build/fuzz-$$target.log), $$(grep -oE 'cov: [0-9]+' .build/fuzz-$$target.log | tail -1) edges, no crash"; \
	done

# Generated kernels under AddressSanitizer + UndefinedBehaviorSanitizer on odd shapes
# (Tests/Sanitize: N = 1, N = block - 1, a partial last block with reuse), built once and run with
# each instruction set this machine has (CALIBC_ISA caps the kernels' own choice).
OMP = -fopenmp -idirafter /usr/lib/llvm-14/lib/clang/14.0.6/include -L/usr/lib/llvm-14/lib -lomp -Wl,-rpath,/usr/lib/llvm-14/lib
sanitize: deps
	$(SWIFT_BUILD) --product calibc
	@set -e; for masks in Tests/Sanitize/*.json; do \
		dir=.build/sanitize/$$(basename $$masks .json); \
		rm -rf $$dir; $(CALIBC) compile $$masks -o $$dir > /dev/null; \
		clang -std=c11 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
			-I $$dir/include -I $$dir Tests/Sanitize/harness.c $$dir/calib_schedule.c \
			$(OMP) -lpthread -lm -o $$dir.harness; \
		for isa in avx512-bf16 avx512 avx2 sse portable; do \
			result=$$(CALIBC_ISA=$$isa $$dir.harness) || exit 1; echo "$$masks $$isa: $$result"; \
		done; \
	done

# The Python package (python/, imported as `calibc`: kernel loading, the torch custom op, masks.json,
# FlexAttention BlockMask interop, the diffusers processor and recorder), in a venv of CPU torch and
# diffusers from PyPI (redone when this Makefile changes). The tests rely on these versions. CALIBC_BIN is the calibc the Python tests
# and examples compile masks with.
.PHONY: wheel
PY_DEPS = torch==2.13.0+cpu diffusers==0.42.1 numpy==2.4.6 pytest==9.2.0 setuptools==84.2.1
CALIBC_BIN = $(CURDIR)/$(CALIBC)
PY_INSTALL = .venv/bin/pip install -q --no-deps --no-build-isolation --force-reinstall ./python
.venv/ok: Makefile
	python3 -m venv .venv
	.venv/bin/pip install -q $(PY_DEPS)
	touch $@

test-python: deps .venv/ok
	$(SWIFT_BUILD) --product calibc
	$(PY_INSTALL)
	CALIBC=$(CALIBC_BIN) .venv/bin/python -m pytest -q Tests/python

# A wheel of the package in python/dist/ (pure Python: the kernels are the libraries calibc compiles).
wheel: .venv/ok
	.venv/bin/pip wheel -q --no-deps --no-build-isolation -w python/dist ./python
	@ls python/dist/calibc-*.whl

# record → calibrate → compile → run on a small random diffusers Wan.
diffusers: deps .venv/ok
	$(SWIFT_BUILD) --product calibc
	$(PY_INSTALL)
	CALIBC=$(CALIBC_BIN) .venv/bin/python examples/diffusers/end_to_end.py

# Our kernels beside torch's SDPA and flex_attention on the plans and held-out inputs of `make example`.
bench-peers: example .venv/ok
	$(PY_INSTALL)
	.venv/bin/python -m calibc.bench_peers out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors

# ---- CUDA target (issue 14; docs/gpu.md). `gpu-sources` and `cuda-check` run here (no GPU);
# `test-gpu` and `bench-gpu` run on the GPU machine from the carried folder .gpu (made by
# gpu-sources; list .gpu in the device call's carry): they need nvcc and torch, not Swift.
GPU_DIR = .gpu
CUDA_PIP = nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
           nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85
CUDA_PIP_NVCC = .cuda/nvidia/cu13/bin/nvcc
GPU_MASKS = python3 Tests/GPU/make_masks.py
GPU_SETS = t128 t64 ex wan13b wan14b

.cuda/ok:
	python3 -m pip install -q --no-deps --target .cuda $(CUDA_PIP)
	touch $@

gpu-sources: deps
	$(SWIFT_BUILD) --product calibc
	mkdir -p $(GPU_DIR)
	$(GPU_MASKS) -o $(GPU_DIR)/t128.json --tokens 2000 --heads 3 --head-dim 128 --frame-tokens 400 \
	    --layers dense,cal:0.5,cal:0.2,reuse:0.3,rand:0.3 --seed 1
	$(GPU_MASKS) -o $(GPU_DIR)/t64.json --tokens 1900 --heads 2 --head-dim 64 --frame-tokens 400 \
	    --layers dense,cal:0.3,reuse:0.3 --seed 2
	cp examples/masks.json $(GPU_DIR)/ex.json
	$(GPU_MASKS) -o $(GPU_DIR)/wan13b.json --tokens 32760 --heads 12 --head-dim 128 --frame-tokens 1560 \
	    --layers dense,cal:0.5,cal:0.2,cal:0.1,reuse:0.5,reuse:0.2,reuse:0.1,rand:0.5,rand:0.2,rand:0.1,reuse:0.1:0.5,reusex:0.1:0.5 \
	    --seed 3 --model wan2.1-1.3b-480p
	$(GPU_MASKS) -o $(GPU_DIR)/wan14b.json --tokens 75600 --heads 40 --head-dim 128 --frame-tokens 3600 \
	    --layers dense,cal:0.5,cal:0.2,cal:0.1,reuse:0.5,reuse:0.2,reuse:0.1,rand:0.5,rand:0.2,rand:0.1,reuse:0.1:0.5,reusex:0.1:0.5 \
	    --seed 4 --model wan2.1-14b-720p
	for s in $(GPU_SETS); do rm -rf $(GPU_DIR)/$$s; $(CALIBC) compile $(GPU_DIR)/$$s.json -o $(GPU_DIR)/$$s --target cuda >/dev/null || exit 1; done

# The kernel for sm_90a with warnings as errors; fails on any spill in the wgmma (main) kernel.
cuda-check: .cuda/ok gpu-sources
	for s in t128 ex; do NVCC=$(CUDA_PIP_NVCC) NO_LINK=1 sh Tests/GPU/build.sh $(GPU_DIR)/$$s || exit 1; done
	python3 Tests/GPU/check_ptxas.py $(GPU_DIR)/t128/ptxas.log calib_wgmma_kernel
	python3 Tests/GPU/check_ptxas.py $(GPU_DIR)/ex/ptxas.log calib_mma_kernel

test-gpu:
	for s in t128 t64 ex $$(test -d $(GPU_DIR)/tinywan && echo tinywan); do sh Tests/GPU/build.sh $(GPU_DIR)/$$s & done; wait
	cd Tests/GPU && python3 test_gpu.py ../../$(GPU_DIR)/t128/libcalibcuda.so:../../$(GPU_DIR)/t128.json \
	    ../../$(GPU_DIR)/t64/libcalibcuda.so:../../$(GPU_DIR)/t64.json ../../$(GPU_DIR)/ex/libcalibcuda.so:../../$(GPU_DIR)/ex.json
	cd Tests/GPU && PYTHONPATH=../../python:$$PYTHONPATH python3 test_torch.py ../../$(GPU_DIR)/t128/libcalibcuda.so:../../$(GPU_DIR)/t128.json \
	    $$(test -d ../../$(GPU_DIR)/tinywan && echo ../../$(GPU_DIR)/tinywan/libcalibcuda.so)

# The masks of the tiny random Wan of `make diffusers`, for the processor on the GPU (test-gpu).
gpu-sources-torch: .venv/ok gpu-sources
	$(PY_INSTALL)
	CALIBC=$(CALIBC_BIN) .venv/bin/python examples/diffusers/end_to_end.py --out $(GPU_DIR)/tinywan-calibration
	rm -rf $(GPU_DIR)/tinywan
	$(CALIBC) compile $(GPU_DIR)/tinywan-calibration/masks.json -o $(GPU_DIR)/tinywan --target cuda > /dev/null

bench-gpu:
	for s in wan13b wan14b; do sh Tests/GPU/build.sh $(GPU_DIR)/$$s & done; wait
	cd Tests/GPU && python3 bench_gpu.py wan1.3B-480p=../../$(GPU_DIR)/wan13b/libcalibcuda.so:../../$(GPU_DIR)/wan13b.json \
	    wan14B-720p=../../$(GPU_DIR)/wan14b/libcalibcuda.so:../../$(GPU_DIR)/wan14b.json $(BENCH_ARGS)

# Calibration on the GPU (issue 16; docs/calibration.md section 8): `calibrate-gpu-sources` here
# writes bf16 q/k recordings and the C kernel's block mass of the same q/k into .gpu/calib; on the
# GPU machine, Tests/GPU/calibrate_run.sh (carry .gpu/calib and .whl) checks the Triton kernel
# against them and times calibrating during generation.
calibrate-gpu-sources: deps
	$(SWIFT_BUILD) --product calibc
	rm -rf $(GPU_DIR)/calib
	$(CALIBC) synth -o $(GPU_DIR)/calib/small/qk --prompts 1 --steps 40 > /dev/null
	$(CALIBC) synth -o $(GPU_DIR)/calib/small/mass --prompts 1 --steps 40 --mass-block 128 > /dev/null
	$(CALIBC) synth -o $(GPU_DIR)/calib/wan/qk --shape wan1.3b-480p --heads 1 --prompts 1 --steps 20 > /dev/null
	$(CALIBC) synth -o $(GPU_DIR)/calib/wan/mass --shape wan1.3b-480p --heads 1 --prompts 1 --steps 20 --mass-block 128 > /dev/null

# The CPU scaling table on a machine with only a C compiler and OpenMP (the GPU machine's 16
# cores): `make cpu-scaling-sources` here writes the kernels of Tests/CPU/scaling-masks.json, then
# `make cpu-scaling` there checks every instruction set against float64 and times team sizes.
SCALING = .cpu-scaling
cpu-scaling-sources: deps
	$(SWIFT_BUILD) --product calibc
	rm -rf $(SCALING)
	$(CALIBC) compile Tests/CPU/scaling-masks.json -o $(SCALING) > /dev/null

cpu-scaling:
	$(CC) -std=c11 -O3 -march=native -fopenmp -I Sources/CBench/include -c Sources/CBench/peak.c -o $(SCALING)/peak.o
	$(CC) -std=c11 -O3 -fopenmp -I $(SCALING)/include -I $(SCALING) -I Sources/CBench/include Tests/CPU/scaling.c $(SCALING)/calib_schedule.c \
		$(SCALING)/peak.o -lm -o $(SCALING)/scaling
	@for isa in avx2 avx512 avx512-bf16; do CALIBC_ISA=$$isa $(SCALING)/scaling --check || exit 1; done
	$(SCALING)/scaling
