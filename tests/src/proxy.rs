//! Loopback TCP/HTTP proxies that misbehave on purpose, in front of a real
//! server:
//! - [`StoppingProxy`] forwards bytes until it has sent a given number
//!   upstream, then goes away: the listener is closed and every connection
//!   cut, as when a server dies in the middle of an upload.
//! - [`HeaderDroppingProxy`] forwards HTTP/1.1 but removes `If-Match` and
//!   `If-None-Match` from requests: a server that ignores conditional writes.
//! - [`ResponseLosingProxy`] forwards HTTP/1.1, but the first request with
//!   `If-Match` that succeeds has its response never come back: the
//!   connection is cut, as when a network drops a reply. The client retries
//!   a write that already landed.
//!
//! - [`FaultProxy`] forwards HTTP/1.1 with a [`Fault`]: it never answers,
//!   answers every request late, or answers the first requests with
//!   `503 SlowDown` (as S3 does when throttling) before it forwards.
//!
//! - [`SwitchProxy`] forwards HTTP/1.1 and is switched while a command
//!   runs: stopped (every connection cut, the port closed, as a killed
//!   server) and started again on the same port, answering `500`/`503`, or
//!   answering late.
//!
//! All run on plain threads and stop when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections a proxy holds, so stopping can cut them all.
#[derive(Default)]
struct Conns {
    stopped: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl Conns {
    fn track(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.open.lock().unwrap().push(c);
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for c in self.open.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Accepts connections until stopped, handing each to `serve`. The listener
/// is dropped (the port refuses connections) as soon as `stop` is seen.
fn accept_loop(
    listener: TcpListener,
    conns: Arc<Conns>,
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        while !conns.stopped.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    if conns.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    conns.track(&s);
                    let serve = serve.clone();
                    std::thread::spawn(move || serve(s));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => break,
            }
        }
        drop(listener);
    });
}

/// A TCP proxy that dies after forwarding a number of bytes upstream.
pub struct StoppingProxy {
    addr: SocketAddr,
    conns: Arc<Conns>,
    upstream_bytes: Arc<AtomicU64>,
}

impl StoppingProxy {
    /// Proxies to `upstream`; once `stop_after` bytes went upstream (over all
    /// connections), stops.
    pub fn start(upstream: SocketAddr, stop_after: u64) -> StoppingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let conns = Arc::new(Conns::default());
        let sent = Arc::new(AtomicU64::new(0));
        let (c, n) = (conns.clone(), sent.clone());
        accept_loop(listener, conns.clone(), move |client| {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            c.track(&server);
            let (c2, n2) = (c.clone(), n.clone());
            let (mut from_client, mut to_server) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                while let Ok(k) = from_client.read(&mut buf) {
                    if k == 0 || c2.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let before = n2.fetch_add(k as u64, Ordering::SeqCst);
                    let allowed = stop_after.saturating_sub(before).min(k as u64) as usize;
                    if to_server.write_all(&buf[..allowed]).is_err() {
                        break;
                    }
                    if before + k as u64 >= stop_after {
                        c2.stop();
                        break;
                    }
                }
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (server, client);
            let _ = std::io::copy(&mut from_server, &mut to_client);
            let _ = to_client.shutdown(Shutdown::Write);
        });
        StoppingProxy {
            addr,
            conns,
            upstream_bytes: sent,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the proxy has stopped.
    pub fn stopped(&self) -> bool {
        self.conns.stopped.load(Ordering::SeqCst)
    }

    /// Bytes received from clients so far.
    pub fn upstream_bytes(&self) -> u64 {
        self.upstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for StoppingProxy {
    fn drop(&mut self) {
        self.conns.stop();
    }
}

/// An HTTP/1.1 proxy that strips conditional-request headers.
pub struct HeaderDroppingProxy {
    addr: SocketAddr,
    conns: Arc<Conns>,
    dropped: Arc<AtomicU64>,
}

/// Request headers the proxy removes.
const DROPPED: &[&str] = &["if-match", "if-none-match"];

impl HeaderDroppingProxy {
    /// Proxies to `upstream`.
    pub fn start(upstream: SocketAddr) -> HeaderDroppingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let conns = Arc::new(Conns::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let (c, d) = (conns.clone(), dropped.clone());
        accept_loop(listener, conns.clone(), move |client| {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            c.track(&server);
            let (mut from_server, mut to_client) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Write);
            });
            let _ = filter_requests(client, server, &d);
        });
        HeaderDroppingProxy {
            addr,
            conns,
            dropped,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many headers were removed so far.
    pub fn dropped_headers(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for HeaderDroppingProxy {
    fn drop(&mut self) {
        self.conns.stop();
    }
}

/// Forwards requests one by one: the header block filtered, then exactly
/// `Content-Length` bytes of body. A chunked request is forwarded raw from
/// there on (the store never sends one).
fn filter_requests(
    client: TcpStream,
    mut server: TcpStream,
    dropped: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        let mut length = 0u64;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                let _ = server.shutdown(Shutdown::Write);
                return Ok(());
            }
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if line.contains(':') && DROPPED.contains(&name.as_str()) {
                dropped.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if name == "content-length" {
                length = line
                    .split(':')
                    .nth(1)
                    .unwrap_or("0")
                    .trim()
                    .parse()
                    .unwrap_or(0);
            }
            if name == "transfer-encoding" && line.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
            let end = line == "\r\n" || line == "\n";
            head.extend_from_slice(line.as_bytes());
            if end {
                break;
            }
        }
        server.write_all(&head)?;
        if chunked {
            std::io::copy(&mut reader, &mut server)?;
            return Ok(());
        }
        std::io::copy(&mut (&mut reader).take(length), &mut server)?;
    }
}

/// An HTTP/1.1 proxy that loses the response to the first `If-Match`
/// request (after the server has handled it), or the first request with
/// another header and path ([`ResponseLosingProxy::start_matching`]).
pub struct ResponseLosingProxy {
    addr: SocketAddr,
    conns: Arc<Conns>,
    lost: Arc<AtomicU64>,
}

impl ResponseLosingProxy {
    /// Proxies to `upstream`, losing the first successful `If-Match`
    /// response.
    pub fn start(upstream: SocketAddr) -> ResponseLosingProxy {
        Self::start_matching(upstream, "if-match", "")
    }

    /// Proxies to `upstream`, losing the response to the first successful
    /// request that has `header` (lowercase, e.g. `if-none-match`) and
    /// whose request line contains `path`.
    pub fn start_matching(
        upstream: SocketAddr,
        header: &'static str,
        path: &'static str,
    ) -> ResponseLosingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let conns = Arc::new(Conns::default());
        let lost = Arc::new(AtomicU64::new(0));
        let (c, l) = (conns.clone(), lost.clone());
        accept_loop(listener, conns.clone(), move |client| {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            c.track(&server);
            let _ = relay_losing_one(client, server, &l, header, path);
        });
        ResponseLosingProxy { addr, conns, lost }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many responses were lost (0 or 1).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for ResponseLosingProxy {
    fn drop(&mut self) {
        self.conns.stop();
    }
}

/// Reads one HTTP message (head, then `Content-Length` bytes of body) from
/// `from`; `None` at end of stream.
fn read_message(from: &mut BufReader<TcpStream>) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if from.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    from.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// Request by request: forward, read the whole response, relay it, except
/// for the first `If-Match` request that succeeded (while `lost` is 0),
/// whose response is dropped with the connection.
fn relay_losing_one(
    client: TcpStream,
    server: TcpStream,
    lost: &AtomicU64,
    header: &str,
    path: &str,
) -> std::io::Result<()> {
    let mut to_client = client.try_clone()?;
    let mut to_server = server.try_clone()?;
    let mut from_client = BufReader::new(client);
    let mut from_server = BufReader::new(server);
    while let Some((head, body)) = read_message(&mut from_client)? {
        to_server.write_all(head.as_bytes())?;
        to_server.write_all(&body)?;
        let Some((rhead, rbody)) = read_message(&mut from_server)? else {
            break;
        };
        let request_line = head.lines().next().unwrap_or_default();
        let conditional = head.to_ascii_lowercase().contains(&format!("\n{header}:"))
            && request_line.contains(path);
        let landed = rhead.starts_with("HTTP/1.1 2") || rhead.starts_with("HTTP/1.0 2");
        if conditional
            && landed
            && lost
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let _ = to_client.shutdown(Shutdown::Both);
            return Ok(());
        }
        to_client.write_all(rhead.as_bytes())?;
        to_client.write_all(&rbody)?;
    }
    let _ = to_client.shutdown(Shutdown::Write);
    Ok(())
}

/// What a [`FaultProxy`] does to the requests it gets.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Accepts connections and reads requests, never answers.
    Silent,
    /// Forwards every request and relays its answer this much later.
    Delay(Duration),
    /// Answers this many requests with `503 SlowDown`, then forwards.
    Unavailable(u64),
}

/// An HTTP/1.1 proxy in front of a real server that misbehaves by a
/// [`Fault`].
pub struct FaultProxy {
    addr: SocketAddr,
    conns: Arc<Conns>,
    requests: Arc<AtomicU64>,
    faulted: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Proxies to `upstream` (never contacted under [`Fault::Silent`]).
    pub fn start(upstream: SocketAddr, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let conns = Arc::new(Conns::default());
        let requests = Arc::new(AtomicU64::new(0));
        let faulted = Arc::new(AtomicU64::new(0));
        let (c, r, f) = (conns.clone(), requests.clone(), faulted.clone());
        accept_loop(listener, conns.clone(), move |client| {
            let _ = relay_with_fault(client, upstream, fault, &c, &r, &f);
        });
        FaultProxy {
            addr,
            conns,
            requests,
            faulted,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests the fault applied to (not answered, delayed, or refused).
    pub fn faulted(&self) -> u64 {
        self.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.conns.stop();
    }
}

fn relay_with_fault(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    conns: &Conns,
    requests: &AtomicU64,
    faulted: &AtomicU64,
) -> std::io::Result<()> {
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    let mut server: Upstream = None;
    while let Some((head, body)) = read_message(&mut from_client)? {
        requests.fetch_add(1, Ordering::SeqCst);
        match fault {
            Fault::Silent => {
                faulted.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Fault::Unavailable(n) => {
                let refused = faulted
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                        (f < n).then_some(f + 1)
                    })
                    .is_ok();
                if refused {
                    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                    let answer = format!(
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                        xml.len()
                    );
                    to_client.write_all(answer.as_bytes())?;
                    continue;
                }
            }
            Fault::Delay(_) => {
                faulted.fetch_add(1, Ordering::SeqCst);
            }
        }
        let Some(answer) = forward(&mut server, upstream, conns, &head, &body)? else {
            break;
        };
        if let Fault::Delay(d) = fault {
            std::thread::sleep(d);
        }
        to_client.write_all(&answer)?;
    }
    let _ = to_client.shutdown(Shutdown::Write);
    Ok(())
}

/// An upstream connection and its reader, opened on first use.
type Upstream = Option<(TcpStream, BufReader<TcpStream>)>;

/// Sends one request upstream (connecting on first use) and reads its
/// answer, raw; `None` when the server closed the connection.
fn forward(
    server: &mut Upstream,
    upstream: SocketAddr,
    conns: &Conns,
    head: &str,
    body: &[u8],
) -> std::io::Result<Option<Vec<u8>>> {
    if server.is_none() {
        let s = TcpStream::connect(upstream)?;
        conns.track(&s);
        let reader = BufReader::new(s.try_clone()?);
        *server = Some((s, reader));
    }
    let (to_server, from_server) = server.as_mut().expect("connected above");
    to_server.write_all(head.as_bytes())?;
    to_server.write_all(body)?;
    read_answer(from_server, head.starts_with("HEAD "))
}

/// One HTTP/1.1 answer, raw: its head, then a body by `Content-Length` or
/// chunked encoding (none for a HEAD request, 204 or 304).
fn read_answer(from: &mut BufReader<TcpStream>, is_head: bool) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut length = None;
    let mut chunked = false;
    let mut status = 0u16;
    loop {
        let mut line = String::new();
        if from.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let lower = line.to_ascii_lowercase();
        if status == 0 {
            status = lower
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        out.extend_from_slice(line.as_bytes());
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    if is_head || status == 204 || status == 304 {
        return Ok(Some(out));
    }
    if chunked {
        loop {
            let mut size = String::new();
            from.read_line(&mut size)?;
            out.extend_from_slice(size.as_bytes());
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if n == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut line = String::new();
                    if from.read_line(&mut line)? == 0 {
                        break;
                    }
                    out.extend_from_slice(line.as_bytes());
                    if line == "\r\n" || line == "\n" {
                        break;
                    }
                }
                return Ok(Some(out));
            }
            let mut chunk = vec![0u8; n + 2];
            from.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk);
        }
    }
    let mut body = vec![0u8; length.unwrap_or(0)];
    from.read_exact(&mut body)?;
    out.extend_from_slice(&body);
    Ok(Some(out))
}

/// What a [`SwitchProxy`] does with the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards it.
    Forward,
    /// Answers with this status (`500 InternalError`, `503 SlowDown`)
    /// without forwarding.
    Status(u16),
    /// Forwards it and relays the answer this much later.
    Delay(Duration),
}

struct Switch {
    mode: Mutex<Mode>,
    /// Requests answered with an error status before forwarding again.
    errors_left: AtomicU64,
    requests: AtomicU64,
    faulted: AtomicU64,
    /// With [`Mode::Status`]: only requests whose line starts with the
    /// method and contains the part are answered with the error.
    only: Mutex<Option<(String, String)>>,
    /// Every request line (`PUT /bucket/key HTTP/1.1`), in order.
    lines: Mutex<Vec<String>>,
}

/// An HTTP/1.1 proxy in front of a real server, switched by the test while
/// a command runs: [`SwitchProxy::stop`] is a server killed (connections
/// cut, connections refused), [`SwitchProxy::restart`] brings it back on
/// the same port, [`SwitchProxy::set`] makes it answer with errors or late.
pub struct SwitchProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    switch: Arc<Switch>,
    conns: Mutex<Arc<Conns>>,
}

impl SwitchProxy {
    /// Proxies to `upstream`, forwarding.
    pub fn start(upstream: SocketAddr) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let proxy = SwitchProxy {
            addr: listener.local_addr().expect("proxy address"),
            upstream,
            switch: Arc::new(Switch {
                mode: Mutex::new(Mode::Forward),
                errors_left: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                faulted: AtomicU64::new(0),
                only: Mutex::new(None),
                lines: Mutex::new(Vec::new()),
            }),
            conns: Mutex::new(Arc::new(Conns::default())),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let conns = Arc::new(Conns::default());
        *self.conns.lock().unwrap() = conns.clone();
        let (upstream, switch, c) = (self.upstream, self.switch.clone(), conns.clone());
        accept_loop(listener, conns, move |client| {
            let _ = relay_switched(client, upstream, &switch, &c);
        });
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.switch.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with an error or late.
    pub fn faulted(&self) -> u64 {
        self.switch.faulted.load(Ordering::SeqCst)
    }

    /// Stops as a killed server: every open connection cut, the port closed.
    pub fn stop(&self) {
        self.conns.lock().unwrap().stop();
    }

    /// Listens again on the same port (after [`SwitchProxy::stop`]).
    pub fn restart(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match TcpListener::bind(self.addr) {
                Ok(l) => return self.serve(l),
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "cannot listen on {} again: {e}",
                        self.addr
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// What to do with the next requests.
    pub fn set(&self, mode: Mode) {
        *self.switch.mode.lock().unwrap() = mode;
    }

    /// Answers the next `n` requests with `status`, then forwards again.
    pub fn fail_next(&self, n: u64, status: u16) {
        *self.switch.only.lock().unwrap() = None;
        self.switch.errors_left.store(n, Ordering::SeqCst);
        self.set(Mode::Status(status));
    }

    /// Answers the next `n` requests whose request line starts with
    /// `method` and contains `part` with `status` (others are forwarded),
    /// then forwards again. Armed before a command starts, it cannot miss
    /// a command that finishes quickly.
    pub fn fail_matching(&self, method: &str, part: &str, n: u64, status: u16) {
        *self.switch.only.lock().unwrap() = Some((method.to_string(), part.to_string()));
        self.switch.errors_left.store(n, Ordering::SeqCst);
        self.set(Mode::Status(status));
    }

    /// Waits (at most a minute) for a request whose request line (`PUT
    /// /bucket/key?query HTTP/1.1`) starts with `method` and contains
    /// `part`, after the first `skip` requests.
    pub fn wait_for_request(&self, skip: u64, method: &str, part: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .switch
                .lines
                .lock()
                .unwrap()
                .iter()
                .skip(skip as usize)
                .any(|l| l.starts_with(method) && l.contains(part));
            if found {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {method} request for {part} came"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits (at most a minute) until `n` requests have come in.
    pub fn wait_for_requests(&self, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.requests() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {n} requests came",
                self.requests()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn relay_switched(
    client: TcpStream,
    upstream: SocketAddr,
    switch: &Switch,
    conns: &Conns,
) -> std::io::Result<()> {
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    let mut server: Upstream = None;
    while let Some((head, body)) = read_message(&mut from_client)? {
        if conns.stopped.load(Ordering::SeqCst) {
            break;
        }
        let line = head.lines().next().unwrap_or_default().to_string();
        let matches = match &*switch.only.lock().unwrap() {
            Some((method, part)) => {
                line.starts_with(method.as_str()) && line.contains(part.as_str())
            }
            None => true,
        };
        switch.lines.lock().unwrap().push(line);
        switch.requests.fetch_add(1, Ordering::SeqCst);
        let mode = *switch.mode.lock().unwrap();
        if let (Mode::Status(code), true) = (mode, matches) {
            let left = switch
                .errors_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            match left {
                Ok(1) => *switch.mode.lock().unwrap() = Mode::Forward,
                Ok(_) => {}
                Err(_) => {
                    *switch.mode.lock().unwrap() = Mode::Forward;
                }
            }
            if left.is_ok() {
                switch.faulted.fetch_add(1, Ordering::SeqCst);
                let (name, text) = if code == 503 {
                    ("SlowDown", "Service Unavailable")
                } else {
                    ("InternalError", "Internal Server Error")
                };
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{name}</Code><Message>We encountered an internal error. Please try again.</Message></Error>"
                );
                let answer = format!(
                    "HTTP/1.1 {code} {text}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{xml}",
                    xml.len()
                );
                to_client.write_all(answer.as_bytes())?;
                continue;
            }
        }
        let Some(answer) = forward(&mut server, upstream, conns, &head, &body)? else {
            break;
        };
        if let Mode::Delay(d) = mode {
            switch.faulted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(d);
        }
        if conns.stopped.load(Ordering::SeqCst) {
            break;
        }
        to_client.write_all(&answer)?;
    }
    let _ = to_client.shutdown(Shutdown::Both);
    Ok(())
}
