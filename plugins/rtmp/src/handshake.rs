//! The handshake (RTMP specification section 5.2), server side: C0 + C1 in,
//! S0 + S1 + S2 out, then C2 in.
//!
//! ```text
//!   client                     server
//!   C0 (version 3) + C1 ─────▶
//!                      ◀───── S0 + S1 + S2 (S2 echoes C1)
//!   C2 (echoes S1) ──────────▶ done: chunk stream follows
//! ```
//!
//! The simple handshake is used: S1 carries zero version bytes, which is
//! how clients that try the Flash Player 9 digest scheme in C1 (ffmpeg,
//! librtmp/OBS) learn that the server does not use it. Publishing clients
//! do not validate S1/S2 beyond that: ffmpeg only checks the digest of a
//! server's S1 when it plays a stream (`rt->is_input` in `rtmpproto.c`),
//! and librtmp falls back to the simple handshake when S1's version bytes
//! are zero. S1's random part is derived from C1 (plugins have no entropy
//! source and need none: the bytes only have to be echoed).

use sluice_sdk::plugin::SessionError;

/// Size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;

/// The protocol version in C0 and S0.
pub const RTMP_VERSION: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for C0 and C1.
    C0C1,
    /// Waiting for C2.
    C2,
    /// Done.
    Done,
}

/// The server side of the handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    state: State,
    buf: Vec<u8>,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake waiting for C0.
    pub fn new() -> Self {
        ServerHandshake {
            state: State::C0C1,
            buf: Vec::new(),
        }
    }

    /// True once C2 has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes handshake bytes from `input`; returns how many it took and
    /// the S0 + S1 + S2 reply once C0 + C1 are complete.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), SessionError> {
        match self.state {
            State::Done => Ok((0, None)),
            State::C0C1 => {
                if self.buf.is_empty()
                    && let Some(&v) = input.first()
                {
                    check_version(v)?;
                }
                let n = self.fill(input, 1 + HANDSHAKE_SIZE);
                if self.buf.len() < 1 + HANDSHAKE_SIZE {
                    return Ok((n, None));
                }
                let c1 = &self.buf[1..];
                let mut reply = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
                reply.push(RTMP_VERSION);
                // S1: time 0, four zero bytes (no digest scheme), filler.
                reply.extend_from_slice(&[0; 8]);
                let mut x = seed(c1);
                while reply.len() < 1 + HANDSHAKE_SIZE {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    reply.extend_from_slice(&x.to_le_bytes());
                }
                reply.truncate(1 + HANDSHAKE_SIZE);
                // S2: C1 echoed.
                reply.extend_from_slice(c1);
                self.buf.clear();
                self.state = State::C2;
                Ok((n, Some(reply)))
            }
            State::C2 => {
                let n = self.fill(input, HANDSHAKE_SIZE);
                if self.buf.len() == HANDSHAKE_SIZE {
                    // C2 should echo S1; clients differ and nothing depends on it.
                    self.buf = Vec::new();
                    self.state = State::Done;
                }
                Ok((n, None))
            }
        }
    }

    /// Moves bytes from `input` into the buffer until it holds `want`.
    fn fill(&mut self, input: &[u8], want: usize) -> usize {
        let n = (want - self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..n]);
        n
    }
}

fn check_version(v: u8) -> Result<(), SessionError> {
    match v {
        RTMP_VERSION => Ok(()),
        6 | 8 | 9 => Err(SessionError::Unsupported(format!(
            "encrypted RTMP (RTMPE, version {v})"
        ))),
        0x16 => Err(SessionError::Unsupported(
            "TLS on the RTMP port (use rtmp://, not rtmps://)".into(),
        )),
        b'A'..=b'Z' => Err(SessionError::Malformed(format!(
            "not RTMP (starts with {:?}; HTTP?)",
            char::from(v)
        ))),
        _ => Err(SessionError::Malformed(format!("RTMP version {v}"))),
    }
}

/// A non-zero seed from C1 (FNV-1a).
fn seed(c1: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in c1 {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_handshake_byte_by_byte() {
        let mut c0c1 = vec![RTMP_VERSION, 0, 0, 0, 7, 9, 0, 124, 2];
        c0c1.extend((0..HANDSHAKE_SIZE - 8).map(|i| i as u8));
        let mut h = ServerHandshake::new();
        let mut reply = None;
        for (i, b) in c0c1.iter().enumerate() {
            let (n, r) = h.feed(std::slice::from_ref(b)).expect("valid");
            assert_eq!(n, 1);
            assert_eq!(r.is_some(), i == c0c1.len() - 1);
            reply = reply.or(r);
        }
        let reply = reply.expect("S0S1S2");
        assert_eq!(reply.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(reply[0], 3);
        assert_eq!(&reply[1..9], &[0; 8]);
        assert_eq!(&reply[1 + HANDSHAKE_SIZE..], &c0c1[1..]);
        // C2 and the first chunk bytes in one piece: only C2 is taken.
        let mut c2 = reply[1..1 + HANDSHAKE_SIZE].to_vec();
        c2.extend_from_slice(&[0x02, 0, 0]);
        let (n, r) = h.feed(&c2).expect("valid");
        assert_eq!((n, r), (HANDSHAKE_SIZE, None));
        assert!(h.is_done());
    }

    #[test]
    fn wrong_versions() {
        for (v, unsupported) in [(6u8, true), (0x16, true), (b'G', false), (1, false)] {
            let r = ServerHandshake::new().feed(&[v, 0, 0]);
            match r {
                Err(SessionError::Unsupported(_)) => assert!(unsupported, "{v}"),
                Err(SessionError::Malformed(_)) => assert!(!unsupported, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
    }
}
