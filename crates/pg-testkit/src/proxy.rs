//! [`StallProxy`]: a loopback TCP proxy in front of a server that can stop
//! forwarding without closing anything — what a lost NAT or firewall state
//! or a frozen peer looks like to a client whose kernel still gets ACKs.
//!
//! Owns its threads and sockets; knows nothing of the protocol. Invariant:
//! once [`StallProxy::stall`] returns, no byte crosses in either direction
//! (bytes already read are held, never written), connections stay open,
//! and new connections are accepted and then ignored, until the proxy is
//! dropped (which closes everything and joins nothing: its threads end on
//! their own once their sockets are shut down).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// A proxy from `127.0.0.1:<port>` to a server.
pub struct StallProxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    stalled: AtomicBool,
    closing: AtomicBool,
    /// Every socket, to shut down on drop.
    sockets: Mutex<Vec<TcpStream>>,
    /// Parked threads wait here for the drop.
    gate: (Mutex<()>, Condvar),
}

impl Shared {
    /// Blocks the calling thread until the proxy is dropped.
    fn park(&self) {
        let (lock, cvar) = &self.gate;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.closing.load(Ordering::Acquire) {
            guard = cvar.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn keep(&self, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.sockets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

impl StallProxy {
    /// Starts forwarding `127.0.0.1:<new port>` to `host:port`.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub fn start(host: &str, port: u16) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let local = listener.local_addr().expect("local address").port();
        let shared = Arc::new(Shared::default());
        let upstream = format!("{host}:{port}");
        let s = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.closing.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                s.keep(&client);
                if s.stalled.load(Ordering::Acquire) {
                    continue; // accepted, never answered
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                s.keep(&server);
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    if let (Ok(from), Ok(to)) = (from, to) {
                        let s = s.clone();
                        thread::spawn(move || pump(from, to, &s));
                    }
                }
            }
        });
        StallProxy {
            port: local,
            shared,
        }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops forwarding for good; nothing is closed.
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::Release);
    }
}

/// Copies `from` to `to` until the stall (then parks, holding what it read)
/// or until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if shared.stalled.load(Ordering::Acquire) {
            shared.park();
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        {
            let _guard = self.shared.gate.0.lock();
            self.shared.gate.1.notify_all();
        }
        for s in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
