#!/bin/sh
# rustc for the workspace's own crates in the suite: clippy-driver compiles exactly as rustc
# does and lints on the way, with warnings as errors. Set as RUSTC_WORKSPACE_WRAPPER, it lets
# one build both lint the workspace and produce the test binaries, instead of `cargo clippy`
# type-checking every dependency a second time. Cargo calls it as `clippy-rustc.sh RUSTC ARGS`;
# clippy-driver drops the rustc path itself.
exec clippy-driver "$@" -D warnings
