/work/wt/i12/fuzz/target/x86_64-unknown-linux-gnu/release/deps/smallvec-3dcfef4abe91ecc0.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/smallvec-1.16.6/src/lib.rs

/work/wt/i12/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libsmallvec-3dcfef4abe91ecc0.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/smallvec-1.16.6/src/lib.rs

/work/wt/i12/fuzz/target/x86_64-unknown-linux-gnu/release/deps/libsmallvec-3dcfef4abe91ecc0.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/smallvec-1.16.6/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/smallvec-1.16.6/src/lib.rs:
