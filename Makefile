# ocidl: `make` builds, `make test` sets up and runs every test, `make static` builds the
# static musl binary, `make cross` the release for every architecture, `make publish` pushes
# it. Missing tools are installed on first use (Debian, as root or via sudo).

MUSL      := x86_64-unknown-linux-musl
STATIC    := target/$(MUSL)/release/ocidl
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT       := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

VERSION   := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
# The release: one static binary per architecture, named as `uname -m` spells it (armv7 for
# armv7l), with the OCI platform its index entry gets and the qemu that runs it elsewhere.
ARCHS     := x86_64 aarch64 armv7 riscv64 i686
PLATFORM_x86_64  := linux/amd64
PLATFORM_aarch64 := linux/arm64
PLATFORM_armv7   := linux/arm/v7
PLATFORM_riscv64 := linux/riscv64
PLATFORM_i686    := linux/386
QEMU_aarch64 := qemu-aarch64-static
QEMU_armv7   := qemu-arm-static
QEMU_riscv64 := qemu-riscv64-static
QEMU_i686    := qemu-i386-static
DIST      := $(CURDIR)/dist

.PHONY: all build static test lint test-deps musl-deps demo bench fuzz clean
.PHONY: cross tiny test-qemu test-tiny qemu-deps publish test-install

all: build

build:
	cargo build --release
	@ls -l target/release/ocidl

# The release's x86_64 binary, built as `make cross` builds it (std rebuilt without its
# backtrace printer, see .ci/cross), left in target/ only.
static: musl-deps
	.ci/cross --no-dist x86_64
	@ls -l $(STATIC)
	@file $(STATIC) 2>/dev/null || true

test: test-deps
	cargo test

# What CI refuses, as the field's projects do: code rustfmt would change (fuzz targets too),
# and any clippy warning in the library, the binary, the tests and the bench.
lint:
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	cargo fmt --check
	cd fuzz && cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# The main job: a local registry, a pkgforge-shaped package published to it, and the release
# ocidl pulling it, printed as a terminal session (see tests/demo/main.rs).
demo: test-deps
	cargo test --release --quiet --test demo

# What the tests start: the CNCF distribution registry, htpasswd for its Basic auth,
# openssl for its TLS certificates and the token service's signatures, curl to check the test
# registry by hand and for .ci/publish, script (bsdutils) to run ocidl in a pseudo-terminal,
# socat to put TLS in front of a scripted server, skopeo to write and read OCI image layouts
# beside ocidl, and busybox, whose sh and wget run install.sh.
TEST_TOOLS := docker-registry htpasswd openssl curl script socat skopeo busybox
TEST_PACKAGES := docker-registry apache2-utils openssl curl bsdutils socat skopeo busybox-static
test-deps:
	@for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { \
		echo "installing $(TEST_PACKAGES)"; \
		$(APT) update -qq && $(APT) install -y -qq $(TEST_PACKAGES); }

musl-deps:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@command -v musl-gcc >/dev/null || { \
		echo "installing musl-tools (the C compiler ring needs)"; \
		$(APT) update -qq && $(APT) install -y -qq musl-tools; }

clean:
	cargo clean
	rm -rf dist

# Every release binary into dist/ocidl-$(VERSION)-ARCH-linux, checked static, with SHA256SUMS
# and a size table (see .ci/cross; it installs what each target needs).
cross:
	.ci/cross $(ARCHS)
	@$(MAKE) --no-print-directory sums

# The smallest binaries that still work: std rebuilt with panic=immediate-abort, which drops
# every panic message (a panic is a bare SIGABRT).
tiny:
	.ci/cross --tiny x86_64 aarch64
	@echo "tiny binaries: a panic ends them without its message"
	@$(MAKE) --no-print-directory sums

.PHONY: sums
sums:
	@cd dist && sha256sum ocidl-$(VERSION)-* > SHA256SUMS
	@echo "| binary | bytes |"; echo "| --- | ---: |"
	@cd dist && for f in ocidl-$(VERSION)-*; do echo "| $$f | $$(stat -c %s $$f) |"; done

# The integration tests that touch what differs between machines, run against each release
# binary: under qemu-user for the foreign ones, directly for x86_64. The tests start the
# binary through OCIDL_TEST_RUNNER (see tests/support/run.rs), so they are the same tests.
QEMU_TESTS := reference::help_and_version_exit_0 \
	pull::package_lands_in_a_new_output_directory \
	tls::ca_file_makes_the_registry_trusted tls::ca_file_fetches_a_blob \
	tls::untrusted_certificate_is_refused tls::tls_with_basic_auth tls::token_registry_over_tls \
	token::bearer_challenge_fetches_one_token_for_the_whole_package \
	output::blob_to_stdout \
	index::oci_index_defaults_to_this_machine index::docker_manifest_list_defaults_to_this_machine \
	network::body_dropped_twice_resumes_with_range_and_if_range \
	interrupt::sigint_keeps_the_part_and_the_users_file_and_the_next_run_resumes \
	interrupt::sigterm_leaves_no_file_under_the_final_name_and_the_next_run_resumes \
	interrupt::two_runs_on_one_directory_take_turns \
	interrupt::fifo_target_is_written_straight_into_and_stays_a_fifo \
	interrupt::full_device_is_one_clear_error \
	faults::corrupted_blob_leaves_the_users_file_intact \
	pipeline::distribution_gets_each_blob_once_on_a_connection_of_the_pipelines_own \
	pipeline::redirects_are_pipelined_to_the_cdn_without_a_challenge_token
# A misspelt name would match nothing, so the count of tests passed is checked too.
test-qemu: test-deps qemu-deps
	@set -e; $(foreach arch,$(ARCHS),$(call qemu_run,$(arch),))

# The same for what `make tiny` built: they must still work, only panics lose their message.
test-tiny: test-deps qemu-deps
	@set -e; $(foreach arch,x86_64 aarch64,$(call qemu_run,$(arch),-tiny))

define qemu_run
	bin=$(DIST)/ocidl-$(VERSION)-$(1)-linux$(2); log=target/test-qemu-$(1)$(2).log; \
	[ -x $$bin ] || { echo "$$bin missing: run make cross (or make tiny)"; exit 1; }; \
	echo "== $(1)$(2): $(PLATFORM_$(1)) $(or $(QEMU_$(1)),native)"; \
	OCIDL_TEST_BIN=$$bin OCIDL_TEST_RUNNER="$(QEMU_$(1))" OCIDL_TEST_PLATFORM=$(PLATFORM_$(1)) \
		cargo test --quiet --test tests -- --exact $(QEMU_TESTS) >$$log 2>&1 || \
		{ cat $$log; exit 1; }; \
	grep "test result" $$log; \
	grep -q "ok. $(words $(QEMU_TESTS)) passed" $$log || { echo "not all $(words $(QEMU_TESTS)) ran"; exit 1; };
endef

# `make publish REGISTRY=ghcr.io/OWNER [TAG=...]`: dist/ as REGISTRY/ocidl, one index with a
# manifest per platform (see .ci/publish). Without TAG it goes out as $(VERSION) and latest.
publish:
	@[ -n "$(REGISTRY)" ] || { echo "make publish: set REGISTRY (e.g. ghcr.io/OWNER)"; exit 2; }
	@$(MAKE) --no-print-directory cross
	.ci/publish "$(REGISTRY)" $(VERSION) "$(or $(TAG),$(VERSION) latest)" \
		$(foreach arch,$(ARCHS),$(arch)=$(PLATFORM_$(arch)))

# install.sh and `make publish` with the real release on a local registry, the foreign
# binaries run under qemu (see .ci/test-install; `make test` checks install.sh's logic).
test-install: test-deps qemu-deps cross
	.ci/test-install

qemu-deps:
	@command -v qemu-aarch64-static >/dev/null || { \
		echo "installing qemu-user-static"; \
		$(APT) update -qq && $(APT) install -y -qq qemu-user-static; }

# Speed, memory and size beside curl, skopeo and the oras Python client, on a loopback
# registry; prints the table kept in the README. Installs what it compares with.
bench: test-deps static tiny
	@command -v /usr/bin/time >/dev/null && command -v skopeo >/dev/null || { \
		echo "installing time skopeo"; $(APT) update -qq && $(APT) install -y -qq time skopeo; }
	@python3 -c "import oras" 2>/dev/null || pip install -q oras
	cargo bench --bench bench

# Each cargo-fuzz target for FUZZ_SECONDS (nightly and cargo-fuzz; installed when missing).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := reference www_authenticate manifest headers cli registries_conf http1
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		cargo +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=65536 || exit 1; \
	done
