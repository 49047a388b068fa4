# Two entry points a new user needs: `make example` and `make test`. Both install the Debian
# packages calibc builds against when they are missing.

SWIFT_BUILD = swift build -c release
CALIBC = .build/release/calibc
include Sources/CalibKernelSources/kernels/llvm.mk
OMP = -fopenmp -idirafter $(OMP_INCLUDE) -L$(LLVM_LIB) -lomp -Wl,-rpath,$(LLVM_LIB)
DEPS = libclang-dev libomp-dev
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps install dist example bundled test test-fast products kernels golden bench bench-calibrate bench-state bench-scale fuzz sanitize test-python diffusers bench-peers held-out-steps calibrate-gpu-sources gpu-sources cuda-check gpu-sources-torch test-gpu bench-gpu bench-e2e fa4-wheels sass-loops cpu-scaling-sources cpu-scaling

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

# calibc for another x86-64 Linux machine without Swift or LLVM (the GPU machine where
# `python -m calibc.pipeline calibrate` merges and compiles for CUDA): the Swift runtime linked in
# statically, instruction sets limited to x86-64-v3 (AVX2), the kernel sources and libomp's runtime
# beside the binary (RUNPATH $$ORIGIN). libclang is opened only if present; without it compile says
# it skipped its check of the C. Unpack anywhere: `tar xzf calibc-linux-x86_64.tar.gz`.
DIST = .build/dist
dist: deps
	CALIBC_DIST=1 swift build -c release --product calibc --static-swift-stdlib --scratch-path $(DIST)/build \
		-Xlinker -rpath -Xlinker '$$ORIGIN'
	rm -rf $(DIST)/calibc && mkdir -p $(DIST)/calibc
	cp -R $(DIST)/build/release/calibc $(DIST)/build/release/*.resources $(LLVM_LIB)/libomp.so.5 $(DIST)/calibc/
	tar czf $(DIST)/calibc-linux-x86_64.tar.gz -C $(DIST) calibc
	@ls -l $(DIST)/calibc-linux-x86_64.tar.gz

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

# The full tier, optimized (its calibrations and references run 2–10 times faster than at
# -Onone: 4 to 5 minutes here in all, against 8) and in two test processes, built in a directory
# of its own so that the debug builds of `swift build` and test-fast are not redone after it.
test: deps
	swift test --disable-swift-testing --parallel -Xswiftc -O --scratch-path .build/optimized

# The edit–test loop (well under a minute here once built): IR, passes, frontend, JSON,
# safetensors, support, the CUDA target's files and one kernel against float64 with poisoned
# skipped tiles. `make test` is the full tier CI runs.
FAST_TESTS = CalibIRTests|CalibPassesTests|CalibFrontendTests|CalibSafetensorsTests|CalibSupportTests|CUDATargetTests|KernelTests/testSkippedTilesAreNeverRead
test-fast: deps
	swift test --disable-swift-testing --filter '$(FAST_TESTS)'

# Each exported product built by itself, in a build directory of its own, as a package that
# depends on calibc builds it.
products: deps
	for product in calibc CalibRuntime; do swift build --build-path .build/product-$$product --product $$product || exit 1; done

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

# libFuzzer over the masks.json frontend, the IR text reader, the safetensors reader, recordings
# and calibrate's per-head decisions, seeded from Fuzz/corpus (Fuzz/run.sh).
FUZZ_SECONDS = 60
fuzz: deps
	sh Fuzz/run.sh $(FUZZ_SECONDS)

# Generated kernels under AddressSanitizer + UndefinedBehaviorSanitizer on odd shapes, with each
# instruction set this machine has (Tests/Sanitize/run.sh).
sanitize: deps
	$(SWIFT_BUILD) --product calibc
	OMP_FLAGS="$(OMP)" sh Tests/Sanitize/run.sh $(CALIBC)

# The Python package (python/, imported as `calibc`: kernel loading, the torch custom op, masks.json,
# FlexAttention BlockMask interop, the diffusers processor and recorder), in a venv of CPU torch and
# diffusers from PyPI (redone when this Makefile changes). The tests rely on these versions. CALIBC_BIN is the calibc the Python tests
# and examples compile masks with.
.PHONY: wheel
PY_DEPS = torch==2.13.0+cpu diffusers==0.42.1 numpy==2.4.6 pytest==9.2.0 setuptools==84.2.1 torchmetrics==1.9.0 transformers==5.25.0
CALIBC_BIN = $(CURDIR)/$(CALIBC)
# pip builds in python/build, which keeps modules the package no longer has: cleared first.
PY_INSTALL = rm -rf python/build && .venv/bin/pip install -q --no-deps --no-build-isolation --force-reinstall ./python
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
	rm -rf python/build
	.venv/bin/pip wheel -q --no-deps --no-build-isolation -w python/dist ./python
	@ls python/dist/calibc-*.whl

# record → calibrate → compile → run on a small random diffusers Wan.
diffusers: deps .venv/ok
	$(SWIFT_BUILD) --product calibc
	$(PY_INSTALL)
	CALIBC=$(CALIBC_BIN) .venv/bin/python examples/diffusers/end_to_end.py

# What running a step the calibration did not see costs (docs/calibration.md, section 5).
held-out-steps: deps .venv/ok
	$(SWIFT_BUILD) --product calibc
	$(PY_INSTALL)
	.venv/bin/python examples/held_out_steps.py $(CALIBC) out/held-out-steps

# Our kernels beside torch's SDPA and flex_attention on the plans and held-out inputs of `make example`.
bench-peers: example .venv/ok
	$(PY_INSTALL)
	.venv/bin/python examples/bench_peers.py out/masks.json out/kernels/libcalibkernels.so out/recordings/prompt2.safetensors

# ---- CUDA target (docs/gpu.md). `gpu-sources` and `cuda-check` run here (no GPU); `test-gpu`
# and `bench-gpu` run on the GPU machine from the carried folder .gpu (list .gpu in the device
# call's carry): they need nvcc, torch and pytest, not Swift. Every library is built by the
# build.sh calibc wrote beside it, the recipe `calibc compile --target cuda --shared` runs.
GPU_DIR = .gpu
CUDA_PIP = nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
           nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85

.cuda/ok:
	python3 -m pip install -q --no-deps --target .cuda $(CUDA_PIP)
	touch $@

# The mask sets of Tests/GPU/matrix.json, compiled for the CUDA target into .gpu/<set>.
gpu-sources: deps
	$(SWIFT_BUILD) --product calibc
	sh Tests/GPU/sources.sh $(CALIBC) $(GPU_DIR)

# The kernels for sm_90a with warnings as errors; fails on any spill or serialized wgmma.
cuda-check: .cuda/ok gpu-sources
	NVCC=$(CURDIR)/.cuda/nvidia/cu13/bin/nvcc sh Tests/GPU/cuda_check.sh $(GPU_DIR)

# The masks of the tiny random Wan of `make diffusers`, for the processor on the GPU (test-gpu).
gpu-sources-torch: .venv/ok gpu-sources
	$(PY_INSTALL)
	CALIBC=$(CALIBC_BIN) .venv/bin/python examples/diffusers/end_to_end.py --out $(GPU_DIR)/tinywan-calibration
	rm -rf $(GPU_DIR)/tinywan
	$(CALIBC) compile $(GPU_DIR)/tinywan-calibration/masks.json -o $(GPU_DIR)/tinywan --target cuda > /dev/null

test-gpu:
	sh Tests/GPU/test.sh $(GPU_DIR)

bench-gpu:
	sh Tests/GPU/build_sets.sh $(GPU_DIR) wan13b wan14b
	PYTHONPATH=python$${PYTHONPATH:+:$$PYTHONPATH} python3 Tests/GPU/bench_gpu.py wan1.3B-480p=$(GPU_DIR)/wan13b/libcalibcuda.so:$(GPU_DIR)/wan13b.json \
	    wan14B-720p=$(GPU_DIR)/wan14b/libcalibcuda.so:$(GPU_DIR)/wan14b.json $(BENCH_ARGS)

# FlashAttention-4 for bench-gpu's FA4 column (issue 29), as wheels for the GPU machine's Python
# 3.12: .fa4/small, and the 88 MB CUTLASS library wheel split in halves into .fa4/a and .fa4/b so
# that each device call carries under 64 MiB (Tests/GPU/install_fa4.sh joins them there).
FA4_PIP = flash-attn-4==4.0.0b36 nvidia-cutlass-dsl==4.7.0 nvidia-cutlass-dsl-libs-core==4.7.0 \
          nvidia-cutlass-dsl-libs-base==4.7.0 quack-kernels==0.5.3 apache-tvm-ffi==0.1.15.post2 \
          torch-c-dlpack-ext==0.1.5 nvidia-cuda-nvdisasm==13.3.73
FA4_PLATFORM = --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
               --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
fa4-wheels:
	rm -rf .fa4 && mkdir -p .fa4/small .fa4/a .fa4/b
	python3 -m pip download -q --no-deps $(FA4_PLATFORM) -d .fa4/small $(FA4_PIP)
	python3 -m pip download -q --no-deps $(FA4_PLATFORM) -d .fa4/a nvidia-cutlass-dsl-libs-cu13==4.7.0
	cd .fa4/a && split -n 2 -a 2 *.whl "$$(ls *.whl).part-" && rm *.whl && mv *.part-ab ../b/

# The loop bodies of FA4's Hopper forward and of calibc's wgmma kernel (bf16, the Wan 1.3B set) as
# SASS, side by side, without a GPU (issue 29; docs/gpu.md "FA4's loop beside calibc's"): FA4
# through the CUTLASS DSL with wheels for this machine's Python, unpacked into .fa4-sass.
FA4_SASS_PIP = $(FA4_PIP) nvidia-cutlass-dsl-libs-cu13==4.7.0 cuda-bindings==13.5.0 cuda-python==13.4.4 \
               cuda-pathfinder==1.9.1 einops==0.8.2
.fa4-sass/ok:
	rm -rf .fa4-sass && mkdir -p .fa4-sass/wheels
	python3 -m pip download -q --no-deps --only-binary=:all: -d .fa4-sass/wheels $(FA4_SASS_PIP)
	for w in .fa4-sass/wheels/*.whl; do python3 -m zipfile -e $$w .fa4-sass/site; done
	chmod +x .fa4-sass/site/nvidia/cu13/bin/nvdisasm
	touch $@
sass-loops: .venv/ok .cuda/ok .fa4-sass/ok gpu-sources
	cd $(GPU_DIR)/wan13b && $(CURDIR)/.cuda/nvidia/cu13/bin/nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a \
	    -I include -cubin calib_cuda.cu -o ../calibc.cubin
	CUTE_DSL_CACHE_DIR=$(CURDIR)/.fa4-sass/cache \
	    PYTHONPATH=.fa4-sass/site:.fa4-sass/site/nvidia_cutlass_dsl/dsl_packages .venv/bin/python Tests/GPU/fa4_sass.py $(GPU_DIR)/fa4.cubin
	for k in calibc fa4; do .fa4-sass/site/nvidia/cu13/bin/nvdisasm -c $(GPU_DIR)/$$k.cubin > $(GPU_DIR)/$$k.sass; done
	python3 Tests/GPU/sass_loop.py $(GPU_DIR)/fa4.sass
	python3 Tests/GPU/sass_loop.py $(GPU_DIR)/calibc.sass I13__nv_bfloat16NS_10Operands16

# One Wan 2.1 transformer forward at real size, random weights: dense (eager, compiled) against
# calibc (Tests/GPU/bench_e2e.py). E2E_MODELS=1.3b or 14b runs one; E2E_ARGS="--json F" saves it.
bench-e2e:
	sh Tests/GPU/bench_e2e.sh $(GPU_DIR) $(E2E_MODELS)

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
	sh Tests/CPU/scaling.sh $(SCALING)
