//! Deterministic streaming compressors, under one thread and memory budget.
//!
//! The same input gives the same bytes whatever the machine: gzip headers
//! carry no name and mtime 0; xz and zstd run their multithreaded encoders,
//! whose output depends on the block (job) layout but not on the number of
//! workers, and the layout is fixed here.
//!
//! Every encoder of the process draws its worker threads, and the memory
//! they hold, from one `Budget` ([`limits`], [`set_limits`]): a build
//! running one package writer per core no longer runs one compressor per
//! core *per writer* (xz workers hold ~70 MiB each, so that grew with the
//! square of the core count). An encoder asks for as many workers as its
//! input has blocks (a small package: one), takes what is free (at least
//! one), and waits while nothing is; because the output does not depend on
//! the worker count, the bytes are the same whatever it got.

use std::cell::Cell;
use std::io::{self, Write};
use std::num::NonZeroU32;
use std::sync::{Condvar, Mutex, OnceLock};

use flate2::write::GzEncoder;
use liblzma::stream::{Check, Filters, LzmaOptions, MtStreamBuilder};
use liblzma::write::XzEncoder;

/// A compression format for the members of a package.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (single-threaded: parallel gzip output depends on the split).
    Gzip,
    /// xz, multithreaded with a fixed block size.
    #[default]
    Xz,
    /// zstd, multithreaded.
    Zstd,
}

impl Compression {
    /// File name suffix, with its dot (`""` for none).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }

    /// Default level: what dpkg-deb uses (gzip 9, xz 6, zstd 3).
    pub(crate) fn default_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 9,
            Compression::Xz => 6,
            Compression::Zstd => 3,
        }
    }

    /// The name dpkg-deb's `-Z` uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// xz block size. Fixed, because the multithreaded encoder splits the input
/// into blocks of this size whatever the thread count, so fixing it makes
/// the output independent of the machine.
pub(crate) const XZ_BLOCK_SIZE: u64 = 8 << 20;

/// xz dictionary cap. Each xz worker holds its block, a dictionary and a
/// binary-tree match finder of 8 bytes per dictionary byte; with preset 6's
/// 8 MiB dictionary that is ~95 MiB resident per worker, ~55 MiB with
/// 4 MiB. A block of 2x the dictionary is within liblzma's advice (2-4x),
/// and the ratio loss against 8 MiB is small for package payloads.
pub(crate) const XZ_DICT_CAP: u32 = 4 << 20;

/// zstd's job size at the levels pipe uses (<= 3: `4 << windowLog`, window
/// 2 MiB at level 3), the unit a worker compresses; a zstd input gets one
/// worker per job.
const ZSTD_JOB: u64 = 8 << 20;

/// What one zstd worker holds at levels <= 3: its job's input and output
/// buffers, the window and the match tables (~20 MiB measured); counted
/// high, since zstd offers no estimate outside its experimental API.
const ZSTD_WORKER_MEMORY: u64 = 24 << 20;

/// Per level above 3, zstd's window and tables double roughly every level
/// or two; pipe's levels there are rare (a layer or package asking for
/// `zstd` 19), so they are counted as a whole budget's worth per worker.
const ZSTD_HIGH_WORKER_MEMORY: u64 = 256 << 20;

/// A gzip encoder: deflate's window and hash chains (~300 KiB).
const GZIP_MEMORY: u64 = 1 << 20;

/// The default memory budget of all compressors together: well under
/// 1 GiB whatever the core count (seven xz workers at level 6).
pub(crate) const DEFAULT_MEMORY: u64 = 512 << 20;

/// The compressor budget of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Worker threads of every encoder together (default: the cores).
    pub threads: NonZeroU32,
    /// Bytes the encoders may hold together (default `DEFAULT_MEMORY`).
    /// An encoder whose single worker is larger still runs, alone.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            threads: cores(),
            memory: DEFAULT_MEMORY,
        }
    }
}

/// The cores this process may run on.
pub(crate) fn cores() -> NonZeroU32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX)))
        .unwrap_or(NonZeroU32::MIN)
}

/// Threads to ask for when the caller does not say: the whole budget (an
/// encoder gets what is free).
pub(crate) fn default_threads() -> NonZeroU32 {
    limits().threads
}

/// The budget every encoder of the process draws from.
pub fn limits() -> Limits {
    Budget::global().limits()
}

/// Sets the budget of every encoder of the process. Encoders running keep
/// what they hold; new ones see the new limits.
pub fn set_limits(limits: Limits) {
    Budget::global().set(limits);
}

/// Threads and memory shared by encoders: a counting semaphore over two
/// resources, taken by [`Grant`]s.
#[derive(Debug)]
pub(crate) struct Budget {
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    threads: u32,
    memory: u64,
    peak_threads: u32,
    peak_memory: u64,
}

thread_local! {
    /// Grants held by this thread: a thread that holds one and asks for
    /// another must not wait for itself.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            state: Mutex::new(State {
                limits,
                threads: 0,
                memory: 0,
                peak_threads: 0,
                peak_memory: 0,
            }),
            freed: Condvar::new(),
        }
    }

    pub(crate) fn global() -> &'static Budget {
        static GLOBAL: OnceLock<Budget> = OnceLock::new();
        GLOBAL.get_or_init(|| Budget::new(Limits::default()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counters only: a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn limits(&self) -> Limits {
        self.lock().limits
    }

    fn set(&self, limits: Limits) {
        self.lock().limits = limits;
        self.freed.notify_all();
    }

    /// The most threads and memory held at once since the budget was made.
    #[cfg(test)]
    fn peak(&self) -> (u32, u64) {
        let s = self.lock();
        (s.peak_threads, s.peak_memory)
    }

    /// Takes up to `want` workers, each number `n` of them costing
    /// `cost(n)` bytes (increasing in `n`): as many as are free and fit,
    /// at least one; waits while none does. The first grant of an idle
    /// budget, and a grant to a thread that already holds one, never wait,
    /// so an encoder larger than the whole budget runs alone and nested
    /// encoders cannot deadlock.
    pub(crate) fn take(&'static self, want: u32, cost: impl Fn(u32) -> u64) -> Grant {
        let nested = HELD.with(|h| h.get() > 0);
        let mut s = self.lock();
        let n = loop {
            let free_threads = s.limits.threads.get().saturating_sub(s.threads);
            let free_memory = s.limits.memory.saturating_sub(s.memory);
            let fits = (1..=want.max(1).min(free_threads))
                .rev()
                .find(|&n| cost(n) <= free_memory);
            match fits {
                Some(n) => break n,
                None if s.threads == 0 || nested => break 1,
                None => s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        };
        let memory = cost(n);
        s.threads += n;
        s.memory += memory;
        s.peak_threads = s.peak_threads.max(s.threads);
        s.peak_memory = s.peak_memory.max(s.memory);
        drop(s);
        HELD.with(|h| h.set(h.get() + 1));
        tracing::trace!(threads = n, memory, "compressor budget: granted");
        Grant {
            budget: self,
            threads: n,
            memory,
        }
    }
}

/// Workers and memory held by one encoder, given back when it is dropped.
#[derive(Debug)]
pub(crate) struct Grant {
    budget: &'static Budget,
    threads: u32,
    memory: u64,
}

impl Grant {
    pub(crate) fn threads(&self) -> NonZeroU32 {
        NonZeroU32::new(self.threads).unwrap_or(NonZeroU32::MIN)
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.threads = s.threads.saturating_sub(self.threads);
        s.memory = s.memory.saturating_sub(self.memory);
        drop(s);
        // Grants move with their encoder but are taken and dropped on the
        // writer's thread in practice; never below zero either way.
        HELD.with(|h| h.set(h.get().saturating_sub(1)));
        self.budget.freed.notify_all();
    }
}

/// The bytes of file contents in `entries`: what a package's payload
/// compressor will be fed, less the archive headers.
pub(crate) fn payload_size(entries: &[crate::tree::Entry]) -> u64 {
    entries
        .iter()
        .map(|e| match &e.kind {
            crate::tree::EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum()
}

/// Workers worth having for `len` bytes (unknown: `max`) cut into units
/// of `unit`: one per unit, at most `max`.
fn useful_workers(len: Option<u64>, unit: u64, max: NonZeroU32) -> u32 {
    match len {
        Some(len) => {
            let units = len.div_ceil(unit).max(1);
            u32::try_from(units).unwrap_or(u32::MAX).min(max.get())
        }
        None => max.get(),
    }
}

/// A compressing writer, holding its workers' share of the [`Budget`]
/// until it is finished or dropped.
pub(crate) struct Encoder<W: Write> {
    inner: Inner<W>,
    _grant: Option<Grant>,
}

enum Inner<W: Write> {
    None(W),
    Gzip(GzEncoder<W>),
    Xz(XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// An encoder with up to `threads` workers, as many as the budget has
    /// free.
    pub fn new(
        inner: W,
        compression: Compression,
        level: u32,
        threads: NonZeroU32,
    ) -> io::Result<Self> {
        Self::sized(inner, compression, level, threads, None)
    }

    /// An encoder for about `expected_len` bytes of input: it asks the
    /// budget for no more workers than the input has blocks, so a small
    /// input holds one.
    pub(crate) fn sized(
        inner: W,
        compression: Compression,
        level: u32,
        threads: NonZeroU32,
        expected_len: Option<u64>,
    ) -> io::Result<Self> {
        Self::build(
            inner,
            compression,
            level,
            threads,
            expected_len,
            XZ_BLOCK_SIZE,
            Budget::global(),
        )
    }

    fn build(
        inner: W,
        compression: Compression,
        level: u32,
        threads: NonZeroU32,
        expected_len: Option<u64>,
        xz_block_size: u64,
        budget: &'static Budget,
    ) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder {
                inner: Inner::None(inner),
                _grant: None,
            },
            Compression::Gzip => {
                let grant = budget.take(1, |_| GZIP_MEMORY);
                Encoder {
                    inner: Inner::Gzip(
                        flate2::GzBuilder::new()
                            .mtime(0)
                            .write(inner, flate2::Compression::new(level.min(9))),
                    ),
                    _grant: Some(grant),
                }
            }
            Compression::Xz => {
                let filters = || -> io::Result<Filters> {
                    let mut opts = LzmaOptions::new_preset(level).map_err(io::Error::other)?;
                    // The cap lowers presets 6-9; lower presets have smaller
                    // dictionaries already.
                    let dict = opts_dict_size(level).min(XZ_DICT_CAP);
                    opts.dict_size(dict);
                    let mut filters = Filters::new();
                    filters.lzma2(&opts);
                    Ok(filters)
                };
                let mut builder = MtStreamBuilder::new();
                builder
                    .block_size(xz_block_size)
                    .filters(filters()?)
                    .check(Check::Crc64);
                let want = useful_workers(expected_len, xz_block_size, threads);
                // liblzma's own figure for n workers (encoders, block
                // buffers, output queue).
                let costs: Vec<u64> = (1..=want).map(|n| builder.threads(n).memusage()).collect();
                // n is 1..=want; a count outside it is never affordable.
                let grant = budget.take(want, |n| {
                    costs
                        .get((n as usize).wrapping_sub(1))
                        .copied()
                        .unwrap_or(u64::MAX)
                });
                let stream = builder
                    .threads(grant.threads().get())
                    .encoder()
                    .map_err(io::Error::other)?;
                Encoder {
                    inner: Inner::Xz(XzEncoder::new_stream(inner, stream)),
                    _grant: Some(grant),
                }
            }
            Compression::Zstd => {
                let want = useful_workers(expected_len, ZSTD_JOB, threads);
                let per_worker = if level <= 3 {
                    ZSTD_WORKER_MEMORY
                } else {
                    ZSTD_HIGH_WORKER_MEMORY
                };
                let grant = budget.take(want, |n| u64::from(n) * per_worker);
                let mut enc = zstd::stream::write::Encoder::new(inner, level as i32)?;
                // Always at least one worker: zstd's single-threaded mode (0
                // workers) writes different bytes from its multithreaded mode,
                // which is itself independent of the worker count.
                enc.multithread(grant.threads().get())?;
                enc.include_checksum(true)?;
                Encoder {
                    inner: Inner::Zstd(enc),
                    _grant: Some(grant),
                }
            }
        })
    }

    /// Ends the stream and returns the inner writer (and gives the workers
    /// back).
    pub(crate) fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::None(w) => Ok(w),
            Inner::Gzip(e) => e.finish(),
            Inner::Xz(e) => e.finish(),
            Inner::Zstd(e) => e.finish(),
        }
    }
}

/// The dictionary size of an xz preset (xz(1), "--list-presets").
fn opts_dict_size(level: u32) -> u32 {
    const MIB: u32 = 1 << 20;
    match level {
        0 => MIB / 4,
        1 => MIB,
        2 => 2 * MIB,
        3..=5 => 4 * MIB,
        6 => 8 * MIB,
        7 => 16 * MIB,
        8 => 32 * MIB,
        _ => 64 * MIB,
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(w) => w.write(buf),
            Inner::Gzip(e) => e.write(buf),
            Inner::Xz(e) => e.write(buf),
            Inner::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::None(w) => w.flush(),
            Inner::Gzip(e) => e.flush(),
            Inner::Xz(e) => e.flush(),
            Inner::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget of its own, so tests running at once do not share one.
    fn budget(threads: u32, memory: u64) -> &'static Budget {
        Box::leak(Box::new(Budget::new(Limits {
            threads: NonZeroU32::new(threads).unwrap(),
            memory,
        })))
    }

    /// Small xz blocks, so a few MiB make several blocks: the property under
    /// test is the block layout, whatever its size.
    fn compress_in(b: &'static Budget, c: Compression, threads: u32, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::build(
            Vec::new(),
            c,
            c.default_level(),
            NonZeroU32::new(threads).unwrap(),
            Some(data.len() as u64),
            1 << 20,
            b,
        )
        .unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn compress(c: Compression, threads: u32, data: &[u8]) -> Vec<u8> {
        compress_in(budget(threads, u64::MAX), c, threads, data)
    }

    /// Several blocks/jobs of text that compresses, but not to nothing.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 7;
        while out.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(format!("line {} value {:x}\n", out.len(), x >> 40).as_bytes());
        }
        out
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        // zstd's jobs at level 3 are 8 MiB: 20 MiB make three.
        for (c, data) in [
            (Compression::Xz, sample(6 << 20)),
            (Compression::Zstd, sample(20 << 20)),
        ] {
            let one = compress(c, 1, &data);
            assert!(one != compress(c, 1, &data[1..]), "{c:?}: sanity");
            for n in [2, 3, 8] {
                assert!(
                    one == compress(c, n, &data),
                    "{c:?}: 1 vs {n} threads differ"
                );
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_the_memory_budget() {
        let data = sample(6 << 20);
        let free = compress_in(budget(8, u64::MAX), Compression::Xz, 8, &data);
        // One byte: every encoder is over it and gets one worker.
        let tight = compress_in(budget(8, 1), Compression::Xz, 8, &data);
        assert!(free == tight, "xz output changed with the memory budget");
    }

    /// Six writers at once, each asking for four workers, against a
    /// budget of three workers and the memory of two xz workers: never
    /// more held at once, and every output the same.
    #[test]
    fn concurrent_encoders_stay_within_the_budget() {
        let data = std::sync::Arc::new(sample(2 << 20));
        let mut probe = MtStreamBuilder::new();
        let mut opts = LzmaOptions::new_preset(6).unwrap();
        opts.dict_size(XZ_DICT_CAP);
        let mut filters = Filters::new();
        filters.lzma2(&opts);
        probe.block_size(1 << 20).filters(filters);
        let two = probe.threads(2).memusage();
        let b = budget(3, two);
        let outs: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let data = data.clone();
                    scope.spawn(move || compress_in(b, Compression::Xz, 4, &data))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let (threads, memory) = b.peak();
        assert!(
            threads <= 2,
            "{threads} workers held at once, budget 3 and memory for 2"
        );
        assert!(memory <= two, "{memory} bytes held, budget {two}");
        assert!(threads >= 1);
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "outputs differ");
        let s = b.lock();
        assert_eq!((s.threads, s.memory), (0, 0), "every grant given back");
    }

    #[test]
    fn an_encoder_larger_than_the_budget_runs_alone_and_nesting_does_not_wait() {
        let b = budget(1, 1);
        let outer = b.take(4, |n| u64::from(n) << 30);
        assert_eq!(
            outer.threads().get(),
            1,
            "over budget: one worker, not none"
        );
        // Same thread, budget exhausted: granted at once instead of waiting
        // for itself.
        let inner = b.take(1, |_| 1 << 20);
        assert_eq!(inner.threads().get(), 1);
        drop(inner);
        drop(outer);
        let s = b.lock();
        assert_eq!((s.threads, s.memory), (0, 0));
    }

    #[test]
    fn a_small_input_asks_for_one_worker() {
        let max = NonZeroU32::new(16).unwrap();
        assert_eq!(useful_workers(Some(0), XZ_BLOCK_SIZE, max), 1);
        assert_eq!(useful_workers(Some(5000), XZ_BLOCK_SIZE, max), 1);
        assert_eq!(
            useful_workers(Some(XZ_BLOCK_SIZE + 1), XZ_BLOCK_SIZE, max),
            2
        );
        assert_eq!(useful_workers(Some(1 << 40), XZ_BLOCK_SIZE, max), 16);
        assert_eq!(useful_workers(None, XZ_BLOCK_SIZE, max), 16);
    }

    #[test]
    fn gzip_header_has_no_name_or_time() {
        let out = compress(Compression::Gzip, 1, b"x");
        assert_eq!(&out[..4], &[0x1f, 0x8b, 8, 0], "no FNAME flag");
        assert_eq!(&out[4..8], &[0, 0, 0, 0], "mtime 0");
    }
}
