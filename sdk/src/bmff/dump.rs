//! A human-readable box tree, for golden tests and debugging.
//!
//! ```text
//! moof (104 bytes)
//!   mfhd (16 bytes) v0 sequence_number=7
//!   traf (80 bytes)
//!     tfhd (16 bytes) v0 flags=0x20000 track_id=1 default_base_is_moof
//! ...
//! ```

use std::fmt::Write as _;

use super::esds::Esds;
use super::moof::{Mfhd, Tfdt, Tfhd, Trun};
use super::moov::{Mvhd, Trex};
use super::trak::{Hdlr, Mdhd, Smhd, Tkhd, Url, Vmhd};
use super::{BmffBox, FourCC, Ftyp, Header, Reader, Result, Stsz, Styp};

/// Boxes whose body is only boxes.
const CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"mvex", b"moof", b"traf", b"edts",
    b"mfra", b"udta",
];

/// Full boxes (version and flags first) that [`dump`] knows.
const FULL_BOXES: &[&[u8; 4]] = &[
    b"mvhd", b"tkhd", b"mdhd", b"hdlr", b"vmhd", b"smhd", b"nmhd", b"dref", b"url ", b"stsd",
    b"stts", b"stsc", b"stsz", b"stco", b"co64", b"esds", b"trex", b"mehd", b"mfhd", b"tfhd",
    b"tfdt", b"trun", b"elst", b"sidx",
];

/// An indented tree of the boxes in `bytes`, one line per box with its size
/// and key fields; two spaces per level. A box cut short by the end of
/// `bytes` (such as the `mdat` after a fragment header) shows how much of it
/// is present; bytes that do not parse end their level with a `!` line.
pub fn dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    walk(bytes, 0, &mut out);
    out
}

fn line(out: &mut String, depth: usize, text: &str) {
    for _ in 0..depth {
        out.push_str("  ");
    }
    out.push_str(text);
    out.push('\n');
}

fn walk(data: &[u8], depth: usize, out: &mut String) {
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        let h = match Header::parse(rest, u64::MAX) {
            Ok(Some(h)) => h,
            Ok(None) => {
                let msg = format!("! {} bytes: incomplete box header", rest.len());
                return line(out, depth, &msg);
            }
            Err(e) => return line(out, depth, &format!("! {e}")),
        };
        let available = rest.len() as u64;
        let size = h.box_len().unwrap_or(available);
        let present = size.min(available) as usize;
        // `Header::parse` returned a header, so `rest` holds all of it.
        let body = &rest[usize::from(h.header_len)..present];
        let mut head = format!("{} ({size} bytes", h.fourcc);
        if size > available {
            let _ = write!(head, ", {available} present");
        }
        head.push(')');
        if size > available {
            line(out, depth, &head);
        } else {
            describe(h.fourcc, body, depth, &head, out);
        }
        pos += present;
    }
}

/// Decodes a body as a typed box, checking that nothing is left over.
fn typed<T: BmffBox>(body: &[u8]) -> Result<T> {
    let mut r = Reader::new(body);
    let v = T::decode_body(&mut r)?;
    r.finish()?;
    Ok(v)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn brands(major: FourCC, minor: u32, compatible: &[FourCC]) -> String {
    let list: Vec<String> = compatible.iter().map(FourCC::to_string).collect();
    format!(
        "major={major} minor={minor} compatible=[{}]",
        list.join(",")
    )
}

fn describe(fourcc: FourCC, body: &[u8], depth: usize, head: &str, out: &mut String) {
    let mut text = head.to_owned();
    if FULL_BOXES.contains(&&fourcc.0) && body.len() >= 4 {
        let flags = u32::from_be_bytes([0, body[1], body[2], body[3]]);
        let _ = write!(text, " v{}", body[0]);
        if flags != 0 {
            let _ = write!(text, " flags={flags:#x}");
        }
    }
    let kids: Option<&[u8]> = match &fourcc.0 {
        b"stsd" | b"dref" => body.get(8..),
        b"avc1" => body.get(78..),
        b"mp4a" => body.get(28..),
        c if CONTAINERS.contains(&c) => Some(body),
        _ => None,
    };
    match fields(fourcc, body) {
        Ok(f) if f.is_empty() => {}
        Ok(f) => {
            text.push(' ');
            text.push_str(&f);
        }
        Err(e) => {
            let _ = write!(text, " ! {e}");
        }
    }
    line(out, depth, &text);
    if fourcc == Trun::TYPE
        && let Ok(trun) = typed::<Trun>(body)
    {
        for (i, s) in trun.samples.iter().enumerate() {
            let mut l = format!("[{i}]");
            if let Some(d) = s.duration {
                let _ = write!(l, " duration={d}");
            }
            if let Some(z) = s.size {
                let _ = write!(l, " size={z}");
            }
            if let Some(f) = s.flags {
                let _ = write!(l, " flags={f:#010x}");
            }
            if let Some(c) = s.composition_offset {
                let _ = write!(l, " cto={c}");
            }
            line(out, depth + 1, &l);
        }
    }
    if let Some(kids) = kids {
        walk(kids, depth + 1, out);
    }
}

/// The key fields of the boxes this module knows, or nothing.
fn fields(fourcc: FourCC, body: &[u8]) -> Result<String> {
    let mut r = Reader::new(body);
    Ok(match &fourcc.0 {
        b"ftyp" => {
            let f = typed::<Ftyp>(body)?;
            brands(f.major_brand, f.minor_version, &f.compatible_brands)
        }
        b"styp" => {
            let f = typed::<Styp>(body)?;
            brands(f.major_brand, f.minor_version, &f.compatible_brands)
        }
        b"mvhd" => {
            let m = typed::<Mvhd>(body)?;
            format!(
                "timescale={} duration={} next_track_id={}",
                m.timescale, m.duration, m.next_track_id
            )
        }
        b"tkhd" => {
            let t = typed::<Tkhd>(body)?;
            format!(
                "track_id={} duration={} size={}x{} volume={:#06x}",
                t.track_id,
                t.duration,
                f64::from(t.width) / 65536.0,
                f64::from(t.height) / 65536.0,
                t.volume
            )
        }
        b"mdhd" => {
            let m = typed::<Mdhd>(body)?;
            format!(
                "timescale={} duration={} language={}",
                m.timescale,
                m.duration,
                String::from_utf8_lossy(&m.language)
            )
        }
        b"hdlr" => {
            let h = typed::<Hdlr>(body)?;
            format!("handler={} name={:?}", h.handler_type, h.name)
        }
        b"vmhd" => format!("graphics_mode={}", typed::<Vmhd>(body)?.graphics_mode),
        b"smhd" => format!("balance={}", typed::<Smhd>(body)?.balance),
        b"url " => {
            let u = typed::<Url>(body)?;
            if u.flags & 1 == 1 {
                "self-contained".into()
            } else {
                format!("location={:?}", u.location)
            }
        }
        b"stsd" | b"dref" | b"stts" | b"stsc" | b"stco" | b"co64" => {
            r.version_flags()?;
            format!("entries={}", r.u32()?)
        }
        b"stsz" => {
            let s = typed::<Stsz>(body)?;
            format!(
                "sample_size={} sample_count={}",
                s.sample_size, s.sample_count
            )
        }
        b"avc1" => {
            r.skip(6)?;
            let dri = r.u16()?;
            r.skip(16)?;
            let (w, h) = (r.u16()?, r.u16()?);
            format!("data_reference_index={dri} size={w}x{h}")
        }
        b"mp4a" => {
            r.skip(6)?;
            let dri = r.u16()?;
            r.skip(8)?;
            let (ch, bits) = (r.u16()?, r.u16()?);
            r.skip(4)?;
            let rate = r.u32()? >> 16;
            format!(
                "data_reference_index={dri} channels={ch} sample_size={bits} sample_rate={rate}"
            )
        }
        b"avcC" => format!("config={}", hex(body)),
        b"esds" => {
            let e = typed::<Esds>(body)?;
            format!(
                "es_id={} object_type={:#04x} stream_type={} buffer_size={} max_bitrate={} avg_bitrate={} decoder_specific_info={}",
                e.es_id,
                e.object_type_indication,
                e.stream_type,
                e.buffer_size_db,
                e.max_bitrate,
                e.avg_bitrate,
                hex(&e.decoder_specific_info)
            )
        }
        b"trex" => {
            let t = typed::<Trex>(body)?;
            format!(
                "track_id={} sample_description_index={} duration={} size={} flags={:#010x}",
                t.track_id,
                t.default_sample_description_index,
                t.default_sample_duration,
                t.default_sample_size,
                t.default_sample_flags
            )
        }
        b"mfhd" => format!("sequence_number={}", typed::<Mfhd>(body)?.sequence_number),
        b"tfhd" => {
            let t = typed::<Tfhd>(body)?;
            let mut s = format!("track_id={}", t.track_id);
            let opts = [
                ("base_data_offset", t.base_data_offset),
                (
                    "sample_description_index",
                    t.sample_description_index.map(u64::from),
                ),
                ("default_duration", t.default_sample_duration.map(u64::from)),
                ("default_size", t.default_sample_size.map(u64::from)),
            ];
            for (name, v) in opts {
                if let Some(v) = v {
                    let _ = write!(s, " {name}={v}");
                }
            }
            if let Some(f) = t.default_sample_flags {
                let _ = write!(s, " default_flags={f:#010x}");
            }
            if t.duration_is_empty {
                s.push_str(" duration_is_empty");
            }
            if t.default_base_is_moof {
                s.push_str(" default_base_is_moof");
            }
            s
        }
        b"tfdt" => format!(
            "base_media_decode_time={}",
            typed::<Tfdt>(body)?.base_media_decode_time
        ),
        b"trun" => {
            let t = typed::<Trun>(body)?;
            let mut s = format!("sample_count={}", t.samples.len());
            if let Some(o) = t.data_offset {
                let _ = write!(s, " data_offset={o}");
            }
            if let Some(f) = t.first_sample_flags {
                let _ = write!(s, " first_sample_flags={f:#010x}");
            }
            s
        }
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmff::init::tests::sample_init;
    use crate::bmff::media::tests::{sample_fragment_with_payload, samples};
    use crate::bmff::{fragment_header, write_box};

    #[test]
    fn dumps_an_init_segment() {
        let d = dump(&sample_init());
        let expect = "\
ftyp (24 bytes) major=iso6 minor=0 compatible=[iso6,cmfc]
moov (";
        assert!(d.starts_with(expect), "{d}");
        for needle in [
            "\n  mvhd (108 bytes) v0 timescale=1000 duration=0 next_track_id=3\n",
            "\n    tkhd (92 bytes) v0 flags=0x3 track_id=1 duration=0 size=320x240 volume=0x0000\n",
            "\n      mdhd (32 bytes) v0 timescale=90000 duration=0 language=und\n",
            "\n      hdlr (45 bytes) v0 handler=vide name=\"VideoHandler\"\n",
            "\n          stsd (",
            "\n            avc1 (",
            "\n              avcC (54 bytes) config=0164000dffe1",
            "\n              esds (",
            " object_type=0x40 stream_type=5 ",
            "\n    trex (32 bytes) v0 track_id=2 sample_description_index=1",
        ] {
            assert!(d.contains(needle), "missing {needle:?} in\n{d}");
        }
        assert!(!d.contains('!'), "{d}");
    }

    #[test]
    fn dumps_a_fragment_header_without_its_payload() {
        let header = fragment_header(7, 1, 900_000, &samples()).unwrap();
        let d = dump(&header);
        assert!(d.contains("mfhd (16 bytes) v0 sequence_number=7"), "{d}");
        assert!(
            d.contains("tfhd (16 bytes) v0 flags=0x20000 track_id=1 default_base_is_moof"),
            "{d}"
        );
        assert!(d.contains("tfdt (20 bytes) v1 base_media_decode_time=900000"));
        assert!(d.contains("trun (68 bytes) v1 flags=0xf01 sample_count=3 data_offset="));
        assert!(d.contains("      [1] duration=3600 size=3 flags=0x01010000 cto=-3600\n"));
        assert!(d.ends_with("mdat (20 bytes, 8 present)\n"), "{d}");
        // With its payload the mdat is whole.
        let d = dump(&sample_fragment_with_payload());
        assert!(d.ends_with("mdat (20 bytes)\n"), "{d}");
    }

    #[test]
    fn dump_reports_garbage() {
        assert_eq!(dump(&[0, 0, 0]), "! 3 bytes: incomplete box header\n");
        let mut b = Vec::new();
        write_box(&mut b, FourCC::new(b"moov"), |b| {
            b.extend_from_slice(&[0, 0, 0, 2, b'b', b'a', b'd', b'!']);
            Ok(())
        })
        .unwrap();
        let d = dump(&b);
        assert!(
            d.starts_with("moov (16 bytes)\n  ! box bad! declares size 2"),
            "{d}"
        );
        let mut b = Vec::new();
        write_box(&mut b, FourCC::new(b"mfhd"), |b| {
            b.push(0);
            Ok(())
        })
        .unwrap();
        assert!(dump(&b).starts_with("mfhd (9 bytes) ! unexpected end"));
    }
}
