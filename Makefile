# The two commands of the README, and their parts.
.PHONY: local test deps lint

# Start a local 3-member etcd cluster, a server and a collector (Ctrl-C stops all).
local: deps
	cargo run --release --locked --bin dbmon -- local

# Everything the tests need, then every test.
test: deps lint
	cargo test --workspace --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

deps:
	deploy/install-deps.sh
