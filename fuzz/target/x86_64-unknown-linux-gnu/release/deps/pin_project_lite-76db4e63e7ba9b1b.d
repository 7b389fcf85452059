/work/wt/i12/fuzz/target/x86_64-unknown-linux-gnu/release/deps/pin_project_lite-76db4e63e7ba9b1b.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs

/work/wt/i12/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libpin_project_lite-76db4e63e7ba9b1b.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs

/work/wt/i12/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libpin_project_lite-76db4e63e7ba9b1b.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pin-project-lite-0.2.18/src/lib.rs:
