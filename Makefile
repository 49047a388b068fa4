# Two entry points a new user needs: `make example` and `make test`. Both install the Debian
# packages calibc builds against when they are missing.

SWIFT_BUILD = swift build -c release
CALIBC = .build/release/calibc
DEPS = libclang-dev libomp-dev
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps example test kernels golden

deps:
	@dpkg -s $(DEPS) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEPS); }

# Compile the bundled masks into generated/CalibKernels, rebuild, and run every (step, layer, head).
example: deps
	$(SWIFT_BUILD) --product calibc
	$(CALIBC) compile examples/masks.json -o generated/CalibKernels
	$(SWIFT_BUILD) --product calib-demo
	.build/release/calib-demo examples/masks.json

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
