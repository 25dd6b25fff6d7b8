//! A TCP relay on loopback that injects faults between an edge and its
//! upstream: added latency, refused connections, or a black hole. The mode
//! changes at run time and applies to connections already open.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

/// What the relay does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relays both ways.
    Pass,
    /// Relays, holding every chunk from the upstream this long.
    Delay(Duration),
    /// Closes new and open connections (a dead upstream).
    Refuse,
    /// Accepts and reads, never answers (a hung upstream).
    Blackhole,
}

/// A running relay to one upstream.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Relays `127.0.0.1:0` to `upstream`, passing.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mode.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let m = m.clone();
                std::thread::spawn(move || serve(client, upstream, m));
            }
        });
        Ok(FaultProxy { addr, mode, stop })
    }

    /// Sets the mode.
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn mode(m: &Mutex<Mode>) -> Mode {
    *m.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(client: TcpStream, upstream: SocketAddr, m: Arc<Mutex<Mode>>) {
    match mode(&m) {
        Mode::Refuse => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        Mode::Blackhole => {
            let mut client = client;
            let mut buf = [0u8; 16384];
            while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
            return;
        }
        _ => {}
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let m2 = m.clone();
    let up = std::thread::spawn(move || pump(client, server, &m2, false));
    pump(s2, c2, &m, true);
    let _ = up.join();
}

/// Copies `from` to `to` until either closes or the mode refuses; chunks
/// from the upstream are held in delay mode and dropped in black-hole mode.
fn pump(mut from: TcpStream, mut to: TcpStream, m: &Mutex<Mode>, from_upstream: bool) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match mode(m) {
            Mode::Refuse => break,
            Mode::Blackhole if from_upstream => continue,
            Mode::Delay(d) if from_upstream => std::thread::sleep(d),
            _ => {}
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
