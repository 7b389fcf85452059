//! Streams a large deterministic blob into a store and back, then reports its
//! own peak memory. Run by `tests/tests/store_conformance.rs` in a process of
//! its own, so the measurement sees nothing but this transfer.
//!
//! Usage: store-stream STORE_URL SIZE_BYTES
//! (S3 settings from the standard AWS environment.) Prints one JSON object:
//! the blob put, the BLAKE3 of the bytes read back, and `vm_hwm_kib`.

use std::pin::Pin;
use std::task::{Context, Poll};

use pipeline::store::{OpenOptions, Store, StoreUrl};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The first `remaining` bytes of a BLAKE3 extendable output: any length,
/// no memory, and a digest the test can recompute.
struct Xof {
    reader: blake3::OutputReader,
    remaining: u64,
}

impl AsyncRead for Xof {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.remaining) as usize;
        let dst = buf.initialize_unfilled_to(n);
        self.reader.fill(dst);
        buf.advance(n);
        self.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: store-stream STORE_URL SIZE_BYTES");
    let url = StoreUrl::parse(&args[1], &std::env::current_dir()?)?;
    let size: u64 = args[2].parse()?;
    let store = Store::open(&url, &OpenOptions::default()).await?;

    let source = Xof {
        reader: blake3::Hasher::new()
            .update(b"pipe store-stream")
            .finalize_xof(),
        remaining: size,
    };
    let put = store.put_blob(source).await?;

    let mut reader = store.get_blob(&put.blob).await?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        read += n as u64;
    }

    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/self/status"))?;
    println!(
        "{}",
        serde_json::json!({
            "blob": put.blob,
            "uploaded": put.uploaded,
            "read_size": read,
            "read_blake3": hasher.finalize().to_hex().to_string(),
            "vm_hwm_kib": hwm,
        })
    );
    Ok(())
}
