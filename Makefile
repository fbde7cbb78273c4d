# The two commands of the README, and their parts.
.PHONY: local test deps lint bench deny check-windows

# Start a local 3-member etcd cluster, a server and a collector (Ctrl-C stops all).
local:
	deploy/install-deps.sh --local
	cargo run --release --locked --bin dbmon -- local --dir .dbmon-local

# Everything the tests need, then every test.
test: deps lint
	cargo test --workspace --locked

lint: deny
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

deps:
	deploy/install-deps.sh

# Micro-benchmarks and the load run beside Prometheus; results in target/bench.
bench: deps
	deploy/install-deps.sh --bench
	mkdir -p target
	cargo bench --locked -p dbmon-collector -p dbmon-proto -p dbmon-server -p dbmon-auth --bench parse --bench http_checks --bench spill --bench report --bench cache --bench store --bench verify --bench alerting -- --warm-up-time 1 --measurement-time 3 > target/criterion.txt
	grep -E "time:|^[a-z_0-9]+/" target/criterion.txt
	cargo build --release --locked --features load-tool --bin dbmon --bin dbmon-load
	$$(cargo metadata --no-deps --format-version 1 | sed 's/.*"target_directory":"\([^"]*\)".*/\1/')/release/dbmon-load --pin --out target/bench

# Supply-chain policy (deny.toml): licences, crates.io only, no wildcard
# versions, duplicate versions reported (as warnings; the list is long and
# comes from upstream). Advisories need the RustSec database from the
# network: `cargo deny check advisories` where it can be fetched.
deny:
	command -v cargo-deny >/dev/null 2>&1 || cargo install --locked --quiet cargo-deny
	cargo fetch --locked --quiet
	cargo deny --offline --log-level error check licenses bans sources

# The client and the crates it builds on, checked for Windows (x86_64,
# MinGW): the Rust target through rustup, Debian's MinGW compiler for the C
# in ring, and the MinGW build of libsodium that libsodium-sys ships.
check-windows:
	rustup target add x86_64-pc-windows-gnu
	command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && s="" || s=sudo; $$s apt-get install -y -qq gcc-mingw-w64-x86-64; }
	SODIUM_LIB_DIR=$$(dirname $$(cargo metadata --format-version 1 | sed 's/.*"manifest_path":"\([^"]*libsodium-sys[^"]*\)".*/\1/'))/mingw/win64 \
		cargo check --locked --target x86_64-pc-windows-gnu -p dbmon-client
