//! `tier_frame`: the frames of the QUIC tier protocol `sluice-tier/1`
//! (`host/src/wire/frame.rs`, compiled in here with `#[path]`), which an
//! ingest node reads from edges (requests) and an edge reads from its
//! upstreams (answer heads, push heads).
//!
//! The data is a stream of frames back to back. It is read with
//! [`frame::FrameReader`] fed the whole stream and fed the pieces the cuts
//! make, each time never more than the reader says it needs: both must
//! give the same frames and end the same way (a bound exceeded, or the
//! stream ending inside a frame). Every frame is decoded as each of the
//! three frame types; a value that decodes must encode to a frame that
//! decodes to the same value, and a push head that passes its checks must
//! name exactly the checksum its hex digits spell.

use crate::{Input, pieces, split};

#[path = "../../host/src/wire/frame.rs"]
pub mod frame;

use frame::{FrameError, FrameReader, Head, MAX_FRAME, PushHead, Request};

/// How a stream of frames ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// At a frame boundary.
    Clean,
    /// Inside a frame, with this many bytes of it read.
    Cut(usize),
    /// On a frame the reader refused.
    Refused(FrameError),
}

/// Reads frames from `pieces` in order, feeding each reader at most what
/// it needs.
fn read_all(pieces: &[&[u8]]) -> (Vec<Vec<u8>>, End) {
    let mut frames = Vec::new();
    let mut reader = FrameReader::new(MAX_FRAME);
    let mut partial = 0usize;
    for piece in pieces {
        let mut at = 0;
        while at < piece.len() {
            let want = reader.needed();
            assert!(want > 0, "a complete frame was not taken");
            let end = (at + want).min(piece.len());
            let taken = match reader.feed(&piece[at..end]) {
                Ok(n) => n,
                Err(e) => return (frames, End::Refused(e)),
            };
            assert!(
                taken <= want && taken <= end - at,
                "took {taken} of {}",
                end - at
            );
            assert!(taken > 0, "a reader needing bytes took none");
            at += taken;
            partial += taken;
            if reader.needed() == 0 {
                let done = std::mem::replace(&mut reader, FrameReader::new(MAX_FRAME));
                let frame = done
                    .frame()
                    .expect("a reader needing nothing has its frame");
                assert!(frame.len() <= MAX_FRAME, "frame of {} bytes", frame.len());
                assert_eq!(partial, frame.len() + 4, "bytes taken for one frame");
                frames.push(frame);
                partial = 0;
            }
        }
    }
    let end = if reader.is_empty() {
        End::Clean
    } else {
        End::Cut(partial)
    };
    (frames, end)
}

/// Decodes `json` as `T`, and checks that the value survives a round trip.
fn round_trip<T>(json: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = frame::decode(json).ok()?;
    let encoded = frame::encode_frame(&value);
    let len = u32::from_be_bytes(encoded[..4].try_into().expect("a length prefix"));
    assert_eq!(len as usize, encoded.len() - 4, "length prefix");
    let back: T = frame::decode(&encoded[4..])
        .unwrap_or_else(|e| panic!("an encoded {value:?} does not decode: {e}"));
    assert_eq!(back, value, "round trip changed the value");
    Some(value)
}

/// The `tier_frame` target.
pub fn fuzz(input: &[u8]) {
    let Some(Input { data, cuts }) = split(input) else {
        return;
    };
    let whole = read_all(&[data]);
    let cut = read_all(&pieces(data, &cuts));
    assert_eq!(whole, cut, "pieces read differently from the whole");
    for json in &whole.0 {
        let _ = round_trip::<Request>(json);
        let _ = round_trip::<Head>(json);
        if let Some(head) = round_trip::<PushHead>(json)
            && let Ok(sum) = head.checked(u64::MAX)
        {
            assert_eq!(format!("{sum:016x}"), head.sum.to_ascii_lowercase());
            assert!(crate::names::valid_name(&head.channel));
        }
    }
}

/// Seed inputs: a request, a subscription, an answer head, a push head, all
/// back to back, whole and cut byte by byte; a frame declaring too much;
/// a stream cut inside a frame.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut stream = Vec::new();
    stream.extend_from_slice(&frame::encode_frame(&Request {
        get: Some("/_tier/v1/channels/ch1/timeline?after=2000".into()),
        token: Some("t0ken".into()),
        ..Request::default()
    }));
    stream.extend_from_slice(&frame::encode_frame(&Request {
        subscribe: Some("ch1".into()),
        ..Request::default()
    }));
    let mut head = Head {
        status: 200,
        ..Head::default()
    };
    head.headers
        .insert("cache-control".into(), "public, max-age=1".into());
    head.after = Some([(1, 180_000), (2, 96_000)].into_iter().collect());
    stream.extend_from_slice(&frame::encode_frame(&head));
    stream.extend_from_slice(&frame::encode_frame(&PushHead {
        channel: "ch1".into(),
        track: 1,
        start: 360_000,
        sum: "9f3c2a0b4d5e6f70".into(),
        len: 41_233,
    }));
    let with = |control: Vec<u8>, data: &[u8]| {
        let mut v = control;
        v.extend_from_slice(data);
        v
    };
    let mut too_large = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
    too_large.extend_from_slice(b"{}");
    vec![
        ("gen-frames", with(vec![crate::WHOLE], &stream)),
        ("gen-frames-bytewise", with(vec![crate::every(1)], &stream)),
        (
            "gen-frames-cut",
            with(crate::at(&[3, 40, 41, 200]), &stream),
        ),
        ("gen-too-large", with(vec![crate::WHOLE], &too_large)),
        (
            "gen-cut-inside",
            with(vec![crate::WHOLE], &stream[..stream.len() - 7]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_read_alike_whole_and_in_pieces() {
        for (name, seed) in seeds() {
            fuzz(&seed);
            let Input { data, .. } = split(&seed).expect("a seed splits");
            let (frames, end) = read_all(&[data]);
            match name {
                "gen-too-large" => assert!(matches!(end, End::Refused(FrameError::TooLarge(_)))),
                "gen-cut-inside" => assert!(matches!(end, End::Cut(_)), "{end:?}"),
                _ => {
                    assert_eq!(frames.len(), 4, "{name}");
                    assert_eq!(end, End::Clean, "{name}");
                }
            }
        }
    }
}
