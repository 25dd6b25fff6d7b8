//! The bootstrap (`abst`, Adobe F4V spec, annex F4V boxes for HDS): one
//! segment run table saying "segment 1 holds N fragments" and one fragment
//! run table mapping fragment numbers to media time in milliseconds.
//!
//! ```text
//! abst  FullBox v0: BootstrapinfoVersion u32, Profile:2 Live:1 Update:1 Reserved:4,
//!       TimeScale u32 (1000), CurrentMediaTime u64, SmpteTimeCodeOffset u64,
//!       MovieIdentifier "", Servers 0, Qualities 0, DrmData "", MetaData "",
//!  ├─ asrt  FullBox v0: Qualities 0, 1 entry: FirstSegment 1, FragmentsPerSegment N
//!  └─ afrt  FullBox v0: TimeScale 1000, Qualities 0, entries:
//!           FirstFragment u32, FirstFragmentTimestamp u64, FragmentDuration u32
//!           [DiscontinuityIndicator u8 when FragmentDuration == 0]
//! ```
//!
//! `N` is the span of fragment numbers listed (last - first + 1): yt-dlp
//! counts fragments from the afrt's first number, and a gap inside the span
//! is announced by a discontinuity entry (numbers skipped: indicator 1,
//! timestamps jump: 2, both: 3). An ended presentation ends with an
//! end-of-presentation entry (indicator 0).

use crate::Error;

/// The timescale of every time in the bootstrap: milliseconds.
pub const TIMESCALE: u32 = 1000;

/// One listed fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// HDS fragment number.
    pub number: u32,
    /// Start in milliseconds of media time.
    pub start_ms: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// The timeline has a discontinuity before this fragment.
    pub discontinuity: bool,
}

/// One `afrt` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEntry {
    /// First fragment number of the run.
    pub first: u32,
    /// Its timestamp (ms).
    pub timestamp: u64,
    /// Duration of every fragment of the run (ms); 0 marks a discontinuity.
    pub duration: u32,
    /// Present when `duration` is 0.
    pub discontinuity: Option<u8>,
}

/// Discontinuity indicator: end of presentation.
pub const END_OF_PRESENTATION: u8 = 0;
/// Discontinuity indicator bit: fragment numbers skip.
pub const NUMBERING: u8 = 1;
/// Discontinuity indicator bit: timestamps jump.
pub const TIMESTAMPS: u8 = 2;

/// The fragment run entries for `fragments` (in number order).
pub fn runs(fragments: &[Listed], ended: bool) -> Result<Vec<RunEntry>, Error> {
    let mut out: Vec<RunEntry> = Vec::new();
    // (next expected number, end ms) after the previous fragment, and how
    // many fragments the current run holds.
    let mut prev: Option<(u32, u64)> = None;
    let mut run_len = 0u64;
    for f in fragments {
        let duration =
            u32::try_from(f.duration_ms).map_err(|_| Error::Overflow("fragment duration"))?;
        if let Some((expected, end_ms)) = prev {
            let mut indicator = 0;
            if f.number != expected {
                indicator |= NUMBERING;
            }
            if f.start_ms != end_ms || f.discontinuity {
                indicator |= TIMESTAMPS;
            }
            let extends = indicator == 0
                && out.last().is_some_and(|r| {
                    r.duration == duration
                        && r.discontinuity.is_none()
                        && r.timestamp + run_len * u64::from(duration) == f.start_ms
                });
            if extends {
                run_len += 1;
                prev = Some((f.number.saturating_add(1), f.start_ms + f.duration_ms));
                continue;
            }
            if indicator != 0 {
                out.push(RunEntry {
                    first: expected,
                    timestamp: end_ms,
                    duration: 0,
                    discontinuity: Some(indicator),
                });
            }
        }
        if duration == 0 {
            // A zero duration would read as a discontinuity entry; a
            // fragment always lasts at least a millisecond.
            return Err(Error::Payload("fragment shorter than a millisecond"));
        }
        out.push(RunEntry {
            first: f.number,
            timestamp: f.start_ms,
            duration,
            discontinuity: None,
        });
        run_len = 1;
        prev = Some((f.number.saturating_add(1), f.start_ms + f.duration_ms));
    }
    if ended && let Some((expected, end_ms)) = prev {
        out.push(RunEntry {
            first: expected,
            timestamp: end_ms,
            duration: 0,
            discontinuity: Some(END_OF_PRESENTATION),
        });
    }
    Ok(out)
}

/// What the bootstrap says besides its fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The presentation is live.
    pub live: bool,
    /// Changes whenever the listed fragments do (the last number).
    pub version: u32,
    /// The end of the last listed fragment (ms).
    pub current_media_time: u64,
}

fn full_box(kind: &[u8; 4], body: &[u8]) -> Result<Vec<u8>, Error> {
    let size = u32::try_from(body.len() + 12).map_err(|_| Error::Overflow("box size"))?;
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(&[0, 0, 0, 0]); // version 0, flags 0
    out.extend_from_slice(body);
    Ok(out)
}

/// The `abst` box for `fragments` (in number order).
pub fn write(header: &Header, fragments: &[Listed], ended: bool) -> Result<Vec<u8>, Error> {
    let span = match (fragments.first(), fragments.last()) {
        (Some(a), Some(b)) => b.number.saturating_sub(a.number).saturating_add(1),
        _ => 0,
    };
    let mut asrt = Vec::new();
    asrt.push(0); // QualityEntryCount
    asrt.extend_from_slice(&1u32.to_be_bytes()); // SegmentRunEntryCount
    asrt.extend_from_slice(&1u32.to_be_bytes()); // FirstSegment
    asrt.extend_from_slice(&span.to_be_bytes()); // FragmentsPerSegment

    let entries = runs(fragments, ended)?;
    let mut afrt = Vec::new();
    afrt.extend_from_slice(&TIMESCALE.to_be_bytes());
    afrt.push(0); // QualityEntryCount
    let count = u32::try_from(entries.len()).map_err(|_| Error::Overflow("afrt entries"))?;
    afrt.extend_from_slice(&count.to_be_bytes());
    for e in &entries {
        afrt.extend_from_slice(&e.first.to_be_bytes());
        afrt.extend_from_slice(&e.timestamp.to_be_bytes());
        afrt.extend_from_slice(&e.duration.to_be_bytes());
        if let Some(d) = e.discontinuity {
            afrt.push(d);
        }
    }

    let mut abst = Vec::new();
    abst.extend_from_slice(&header.version.to_be_bytes());
    // Profile 0 (named access), Live, Update 0.
    abst.push(if header.live { 0x20 } else { 0 });
    abst.extend_from_slice(&TIMESCALE.to_be_bytes());
    abst.extend_from_slice(&header.current_media_time.to_be_bytes());
    abst.extend_from_slice(&0u64.to_be_bytes()); // SmpteTimeCodeOffset
    abst.push(0); // MovieIdentifier ""
    abst.push(0); // ServerEntryCount
    abst.push(0); // QualityEntryCount
    abst.push(0); // DrmData ""
    abst.push(0); // MetaData ""
    abst.push(1); // SegmentRunTableCount
    abst.extend(full_box(b"asrt", &asrt)?);
    abst.push(1); // FragmentRunTableCount
    abst.extend(full_box(b"afrt", &afrt)?);
    full_box(b"abst", &abst)
}
