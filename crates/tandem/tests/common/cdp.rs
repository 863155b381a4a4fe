//! Drive a real headless Chromium over the DevTools protocol: a minimal WebSocket client
//! (RFC 6455, client side: masked text frames out, unmasked frames in) and the few CDP calls
//! the dashboard test needs. Hand-written to keep the test dependencies to what the workspace
//! already builds; every wait is bounded.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{curl, read_head, TempDir};

/// Longest any single CDP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// WebSocket

pub struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    /// Connect to `ws://host:port/path`.
    pub async fn connect(url: &str) -> Result<Ws, String> {
        let rest = url.strip_prefix("ws://").ok_or("not a ws:// URL")?;
        let (host, path) = rest.split_at(rest.find('/').ok_or("no path")?);
        let mut stream = TcpStream::connect(host)
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let (head, rest) = read_head(&mut stream)
            .await
            .ok_or("connection closed during the handshake")?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("handshake refused: {head}"));
        }
        Ok(Ws { stream, buf: rest })
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xffff {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x3a, 0x91, 0x5c, 0x07];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    async fn fill(&mut self, n: usize) -> Result<(), String> {
        // On the heap: async fns keep their locals in the future, and a big array there
        // overflows the test thread's stack.
        let mut chunk = vec![0u8; 65536];
        while self.buf.len() < n {
            let got = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if got == 0 {
                return Err("websocket closed".into());
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    /// The next whole text message (continuations joined; pings answered).
    pub async fn recv_text(&mut self) -> Result<String, String> {
        let mut message = Vec::new();
        loop {
            self.fill(2).await?;
            let (b0, b1) = (self.buf[0], self.buf[1]);
            let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
            let (len, mut at) = match b1 & 0x7f {
                126 => {
                    self.fill(4).await?;
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                }
                127 => {
                    self.fill(10).await?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.buf[2..10]);
                    (
                        usize::try_from(u64::from_be_bytes(b)).map_err(|e| e.to_string())?,
                        10,
                    )
                }
                n => (n as usize, 2),
            };
            let mask = if masked {
                self.fill(at + 4).await?;
                let m = [
                    self.buf[at],
                    self.buf[at + 1],
                    self.buf[at + 2],
                    self.buf[at + 3],
                ];
                at += 4;
                Some(m)
            } else {
                None
            };
            self.fill(at + len).await?;
            let mut payload: Vec<u8> = self.buf.drain(..at + len).skip(at).collect();
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).map_err(|e| e.to_string());
                    }
                }
                0x8 => return Err("websocket closed by the browser".into()),
                0x9 => self.send_frame(0xA, &payload).await?,
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CDP

pub struct Cdp {
    ws: Ws,
    next_id: u64,
    /// Events received so far (`{"method": ..., "params": ...}`), in order.
    pub events: Vec<Value>,
}

impl Cdp {
    pub async fn connect(ws_url: &str) -> Cdp {
        let ws = Ws::connect(ws_url)
            .await
            .unwrap_or_else(|e| panic!("DevTools websocket {ws_url}: {e}"));
        Cdp {
            ws,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// Call `method` and return its `result`; panics on a protocol error or a timeout.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        let fut = async {
            self.ws.send_text(&msg).await?;
            loop {
                let text = self.ws.recv_text().await?;
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if v["id"] == id {
                    if let Some(err) = v.get("error") {
                        return Err(format!("{method}: {err}"));
                    }
                    return Ok(v["result"].clone());
                }
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("CDP {method} failed: {e}"),
            Err(_) => panic!("CDP {method} timed out after {CALL_TIMEOUT:?}"),
        }
    }

    /// Evaluate `expr` in the page (promises awaited) and return its value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expr:?} threw: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Poll `expr` every 100 ms until it evaluates to `true`, or panic after `within`.
    pub async fn wait_for(&mut self, what: &str, expr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(expr).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for the page to show {what} ({expr})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save a PNG of the viewport to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let data = r["data"].as_str().expect("screenshot data");
        let png = base64_decode(data).expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = chunk.len().saturating_sub(1);
        for i in 0..take {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The browser

/// A headless Chromium with its own profile directory; stopped (by PID) and its directory
/// removed when dropped.
pub struct Chromium {
    child: Option<Child>,
    dir: TempDir,
    /// The DevTools HTTP/WebSocket endpoint.
    pub devtools: SocketAddr,
}

impl Chromium {
    /// Start Debian's `chromium`. Panics (never skips) if it cannot start: the dashboard test
    /// is only worth something when it runs.
    pub async fn start(width: u32, height: u32) -> Chromium {
        let dir = TempDir::new("chromium");
        let profile = dir.path().join("profile");
        let log = std::fs::File::create(dir.path().join("stderr")).expect("log file");
        let child = Command::new("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--hide-scrollbars",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromium ({e}); install it: apt-get install -y chromium")
            });
        let mut c = Chromium {
            child: Some(child),
            dir,
            devtools: "127.0.0.1:0".parse().expect("addr"),
        };
        // With port 0, Chromium writes the port it chose to DevToolsActivePort.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok())
            {
                c.devtools = SocketAddr::from(([127, 0, 0, 1], port));
                return c;
            }
            if let Some(status) = c.child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
                panic!(
                    "chromium exited with {status} before DevTools was up:\n{}",
                    c.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromium's DevTools did not come up within 30 s:\n{}",
                c.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The WebSocket URL of the first page target.
    pub async fn page_ws(&self) -> String {
        let url = format!("http://{}/json/list", self.devtools);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = curl(&["-s", &url]).await;
            if let Ok(Value::Array(targets)) = serde_json::from_slice::<Value>(&out.stdout) {
                if let Some(ws) = targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                {
                    return ws.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no page target in {url}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            // SIGTERM first so Chromium takes its helper processes down with it; SIGKILL if it
            // has not gone within 5 s. Both by PID.
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill(2) on the PID of our own unreaped child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!("---- chromium log ----\n{}---- end ----", self.log());
        }
    }
}

/// Where test artifacts go: `<target dir>/test-artifacts/`, found from the test binary's own
/// path (`<target>/<profile>/deps/<test>`), so it follows `CARGO_TARGET_DIR`.
pub fn artifact_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("test-artifacts"))
        .unwrap_or_else(|| std::env::temp_dir().join("tandem-test-artifacts"))
}
