//! What the QUIC tier's two ends share: the ingest node's listener
//! (`crate::quic`) and an edge's `quic://` client (`crate::edge::quic`).
//! The frames ([`frame`], pure, fuzzed), the protocol's ALPN and
//! application codes, reading a frame from a QUIC stream, and the UDP
//! sockets both ends open. Depends on nothing else of the host, so neither
//! end depends on the other.

pub mod frame;

use std::net::{SocketAddr, UdpSocket};

pub use frame::FrameError;

/// ALPN of the tier protocol.
pub const ALPN_TIER: &[u8] = b"sluice-tier/1";

/// Application error code: a frame the protocol does not allow (closes the
/// connection).
pub const BAD_FRAME: quinn::VarInt = quinn::VarInt::from_u32(0x101);
/// Stream reset code of a push skipped because it went stale.
pub const STALE: quinn::VarInt = quinn::VarInt::from_u32(0x102);
/// Stop code of a push the edge already holds (or did not ask for).
pub const DUPLICATE: quinn::VarInt = quinn::VarInt::from_u32(0x103);
/// Connection close code when the node holds `MAX_CONNECTIONS` already.
pub const BUSY: quinn::VarInt = quinn::VarInt::from_u32(0x104);
/// Connection close code of an edge whose upstream went silent.
pub const SILENT: quinn::VarInt = quinn::VarInt::from_u32(0x105);

/// Reads one frame of at most `max` bytes, never past its end (a body may
/// follow); `None` when the stream ends before any byte of it.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut reader = frame::FrameReader::new(max);
    let mut chunk = [0u8; 4096];
    while reader.needed() > 0 {
        let want = reader.needed().min(chunk.len());
        match recv.read(&mut chunk[..want]).await {
            Ok(Some(n)) => {
                reader.feed(&chunk[..n])?;
            }
            Ok(None) if reader.is_empty() => return Ok(None),
            Ok(None) => return Err(FrameError::Read("end of stream".into())),
            Err(e) => return Err(FrameError::Read(e.to_string())),
        }
    }
    reader
        .frame()
        .map(Some)
        .ok_or_else(|| FrameError::Read("incomplete frame".into()))
}

/// Socket buffer size asked for on every QUIC endpoint's UDP socket. A
/// fragment pushed to an edge (or a segment sent to a viewer) leaves as a
/// burst of datagrams; with the kernel's default receive buffer (about
/// 208 KiB) a burst of a few hundred kilobytes overflows it on a fast link
/// and every overflow costs a loss-recovery delay (tens of milliseconds,
/// the peer's ack delay included). The kernel caps the size at
/// `net.core.rmem_max` / `wmem_max`; raise those to get all of it.
pub const UDP_BUFFER: usize = 8 << 20;

/// A UDP socket bound to `addr` with [`UDP_BUFFER`]-sized buffers (as
/// large as the kernel allows; a smaller one is logged, not an error).
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < UDP_BUFFER {
        tracing::debug!(
            asked = UDP_BUFFER,
            got,
            "UDP receive buffer capped by the kernel (net.core.rmem_max)"
        );
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
