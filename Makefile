# ocidl: `make` builds, `make test` sets up and runs every test, `make static` builds the
# static musl binary. Missing tools are installed on first use (Debian, as root or via sudo).

MUSL      := x86_64-unknown-linux-musl
STATIC    := target/$(MUSL)/release/ocidl
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT       := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
# Non-PIE static code: smaller, and nothing to relocate at start-up.
MUSL_FLAGS := -C target-feature=+crt-static -C relocation-model=static

.PHONY: all build static test test-deps musl-deps demo bench fuzz clean

all: build

build:
	cargo build --release
	@ls -l target/release/ocidl

static: musl-deps
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(MUSL_FLAGS)" \
		cargo build --release --target $(MUSL)
	@ls -l $(STATIC)
	@file $(STATIC) 2>/dev/null || true

test: test-deps
	cargo test

# The main job: a local registry, a pkgforge-shaped package published to it, and the release
# ocidl pulling it, printed as a terminal session (see tests/demo/main.rs).
demo: test-deps
	cargo test --release --quiet --test demo

# What the tests start: the CNCF distribution registry, htpasswd for its Basic auth,
# openssl for its TLS certificates, curl to check the test registry by hand, and script
# (bsdutils) to run ocidl in a pseudo-terminal, socat to put TLS in front of a scripted server,
# skopeo to write and read OCI image layouts beside ocidl.
TEST_TOOLS := docker-registry htpasswd openssl curl script socat skopeo
test-deps:
	@for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
		echo "installing docker-registry apache2-utils openssl curl bsdutils socat skopeo"; \
		$(APT) update -qq && $(APT) install -y -qq docker-registry apache2-utils openssl curl bsdutils socat skopeo; }

musl-deps:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@command -v musl-gcc >/dev/null || { \
		echo "installing musl-tools (the C compiler ring needs)"; \
		$(APT) update -qq && $(APT) install -y -qq musl-tools; }

clean:
	cargo clean

# Speed, memory and size beside curl, skopeo and the oras Python client, on a loopback
# registry; prints the table kept in the README. Installs what it compares with.
bench: test-deps static
	@command -v /usr/bin/time >/dev/null && command -v skopeo >/dev/null || { \
		echo "installing time skopeo"; $(APT) update -qq && $(APT) install -y -qq time skopeo; }
	@python3 -c "import oras" 2>/dev/null || pip install -q oras
	cargo bench --bench bench

# Each cargo-fuzz target for FUZZ_SECONDS (nightly and cargo-fuzz; installed when missing).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := reference www_authenticate manifest headers cli
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=65536 || exit 1; \
	done
