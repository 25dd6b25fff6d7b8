//! AMF0, the Action Message Format Flash uses for RTMP commands and FLV
//! script data (`onMetaData`).
//!
//! ```text
//!   bytes ─▶ decode / decode_all ─▶ Value ─▶ encode ─▶ bytes
//! ```
//!
//! Decoding is bounded: nesting deeper than [`MAX_DEPTH`] is refused, and
//! every declared count or length is checked against the input that is left
//! before anything is allocated for it.

use std::fmt;

/// Deepest nesting of objects and arrays [`decode`] accepts.
pub const MAX_DEPTH: usize = 32;

/// Type markers (AMF0 specification, section 2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const MOVIECLIP: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
    pub const UNSUPPORTED: u8 = 0x0d;
    pub const RECORDSET: u8 = 0x0e;
    pub const XML_DOCUMENT: u8 = 0x0f;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// Errors of AMF0 decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    /// The input ends inside a value.
    #[error("AMF0 value truncated")]
    Truncated,
    /// A type marker this decoder does not know.
    #[error("unknown AMF0 type marker {0:#04x}")]
    UnknownMarker(u8),
    /// A marker AMF0 reserves or that switches to AMF3.
    #[error("unsupported AMF0 type marker {0:#04x}")]
    Unsupported(u8),
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A declared count larger than the input could hold.
    #[error("AMF0 count {0} exceeds the remaining input")]
    CountTooLarge(u32),
    /// An object-end marker where a value was expected.
    #[error("unexpected AMF0 object end")]
    UnexpectedObjectEnd,
}

/// Result of AMF0 decoding.
pub type Result<T> = std::result::Result<T, Amf0Error>;

impl From<Amf0Error> for crate::plugin::SessionError {
    fn from(e: Amf0Error) -> Self {
        match e {
            Amf0Error::Unsupported(_) => Self::Unsupported(e.to_string()),
            _ => Self::Malformed(e.to_string()),
        }
    }
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// IEEE 754 double.
    Number(f64),
    /// `true` or `false`.
    Boolean(bool),
    /// A string (encoded as a long string when longer than 65535 bytes).
    String(String),
    /// An anonymous object: properties in order.
    Object(Vec<(String, Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// A reference to an earlier complex value (kept as the index).
    Reference(u16),
    /// An associative array: properties in order.
    EcmaArray(Vec<(String, Value)>),
    /// A dense array.
    StrictArray(Vec<Value>),
    /// Milliseconds since the Unix epoch, and a time zone (reserved, 0).
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Time-zone offset in minutes (should be 0).
        timezone: i16,
    },
    /// A string with a 32-bit length.
    LongString(String),
    /// The `unsupported` marker.
    Unsupported,
    /// An XML document as a string.
    XmlDocument(String),
    /// An object with a registered class name.
    TypedObject {
        /// The class name.
        class: String,
        /// Properties in order.
        properties: Vec<(String, Value)>,
    },
}

impl Value {
    /// The number, if this is a number.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The string, if this is a string of either length form.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties, if this is an object, ECMA array or typed object.
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The first property named `key`, if this has properties.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// An object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn props(f: &mut fmt::Formatter<'_>, p: &[(String, Value)]) -> fmt::Result {
            f.write_str("{")?;
            for (i, (k, v)) in p.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k:?}: {v}")?;
            }
            f.write_str("}")
        }
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::Boolean(b) => write!(f, "{b}"),
            Value::String(s) | Value::LongString(s) | Value::XmlDocument(s) => write!(f, "{s:?}"),
            Value::Object(p) | Value::EcmaArray(p) => props(f, p),
            Value::TypedObject { class, properties } => {
                write!(f, "{class}")?;
                props(f, properties)
            }
            Value::Null => f.write_str("null"),
            Value::Undefined => f.write_str("undefined"),
            Value::Unsupported => f.write_str("unsupported"),
            Value::Reference(r) => write!(f, "&{r}"),
            Value::StrictArray(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Date { millis, .. } => write!(f, "Date({millis})"),
        }
    }
}

/// Decodes one value from the start of `data`; returns it and the number of
/// bytes it took.
pub fn decode(data: &[u8]) -> Result<(Value, usize)> {
    let mut r = Reader { data, pos: 0 };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Decodes values until `data` is used up (an RTMP command or data message).
pub fn decode_all(data: &[u8]) -> Result<Vec<Value>> {
    let mut r = Reader { data, pos: 0 };
    let mut out = Vec::new();
    while r.pos < data.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(Amf0Error::Truncated);
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn utf8(&mut self, len: usize) -> Result<String> {
        // Encoders are not always careful about UTF-8 in metadata; keep the
        // value rather than failing the whole message.
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn short_string(&mut self) -> Result<String> {
        let len = self.u16()?;
        self.utf8(usize::from(len))
    }

    fn long_string(&mut self) -> Result<String> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| Amf0Error::Truncated)?;
        self.utf8(len)
    }

    fn peek_object_end(&self) -> bool {
        self.data.get(self.pos..self.pos + 3) == Some(&[0, 0, marker::OBJECT_END])
    }

    /// Properties up to the object-end marker.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>> {
        let mut props = Vec::new();
        loop {
            if self.peek_object_end() {
                self.pos += 3;
                return Ok(props);
            }
            let key = self.short_string()?;
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Value::Number(self.f64()?),
            marker::BOOLEAN => Value::Boolean(self.u8()? != 0),
            marker::STRING => Value::String(self.short_string()?),
            marker::OBJECT => Value::Object(self.properties(depth)?),
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::REFERENCE => Value::Reference(self.u16()?),
            marker::ECMA_ARRAY => {
                // The count is a hint that encoders often get wrong; the
                // end marker is what ends the array.
                let _count = self.u32()?;
                if self.remaining() == 0 {
                    // Some writers omit the end marker of an empty array
                    // at the end of a message.
                    Value::EcmaArray(Vec::new())
                } else {
                    Value::EcmaArray(self.ecma_properties(depth)?)
                }
            }
            marker::OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            marker::STRICT_ARRAY => {
                let count = self.u32()?;
                // Every value takes at least one byte.
                if usize::try_from(count).map_or(true, |c| c > self.remaining()) {
                    return Err(Amf0Error::CountTooLarge(count));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            marker::DATE => {
                let millis = self.f64()?;
                let timezone = self.u16()? as i16;
                Value::Date { millis, timezone }
            }
            marker::LONG_STRING => Value::LongString(self.long_string()?),
            marker::UNSUPPORTED => Value::Unsupported,
            marker::XML_DOCUMENT => Value::XmlDocument(self.long_string()?),
            marker::TYPED_OBJECT => {
                let class = self.short_string()?;
                let properties = self.properties(depth)?;
                Value::TypedObject { class, properties }
            }
            marker::MOVIECLIP | marker::RECORDSET | marker::AVMPLUS => {
                return Err(Amf0Error::Unsupported(m));
            }
            other => return Err(Amf0Error::UnknownMarker(other)),
        })
    }

    /// ECMA array properties; tolerates a missing end marker at the end of
    /// the input.
    fn ecma_properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>> {
        let mut props = Vec::new();
        loop {
            if self.peek_object_end() {
                self.pos += 3;
                return Ok(props);
            }
            if self.remaining() == 0 {
                return Ok(props);
            }
            let key = self.short_string()?;
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

/// Appends the encoding of `value` to `out`.
///
/// A [`Value::String`] longer than 65535 bytes is written as a long string;
/// property names longer than 65535 bytes are cut at a character boundary.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(marker::STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => write_long_string(marker::LONG_STRING, s, out),
        },
        Value::Object(props) => {
            out.push(marker::OBJECT);
            write_properties(props, out);
        }
        Value::Null => out.push(marker::NULL),
        Value::Undefined => out.push(marker::UNDEFINED),
        Value::Reference(r) => {
            out.push(marker::REFERENCE);
            out.extend_from_slice(&r.to_be_bytes());
        }
        Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            let count = u32::try_from(props.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            write_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            let items = &items[..items.len().min(u32::MAX as usize)];
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                encode(v, out);
            }
        }
        Value::Date { millis, timezone } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
        Value::LongString(s) => write_long_string(marker::LONG_STRING, s, out),
        Value::Unsupported => out.push(marker::UNSUPPORTED),
        Value::XmlDocument(s) => write_long_string(marker::XML_DOCUMENT, s, out),
        Value::TypedObject { class, properties } => {
            out.push(marker::TYPED_OBJECT);
            write_key(class, out);
            write_properties(properties, out);
        }
    }
}

/// Encodes a sequence of values (an RTMP command).
pub fn encode_all<'a>(values: impl IntoIterator<Item = &'a Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

fn write_long_string(m: u8, s: &str, out: &mut Vec<u8>) {
    // Strings beyond 4 GiB cannot be represented; cut them.
    let s = truncate_at_char(s, u32::MAX as usize);
    out.push(m);
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_key(key: &str, out: &mut Vec<u8>) {
    let key = truncate_at_char(key, usize::from(u16::MAX));
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
}

fn write_properties(props: &[(String, Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        write_key(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Value) {
        let mut buf = Vec::new();
        encode(v, &mut buf);
        let (back, used) = decode(&buf).expect("decodes");
        assert_eq!(used, buf.len());
        assert_eq!(&back, v);
    }

    #[test]
    fn round_trips() {
        let v = Value::object([
            ("app", Value::string("live/ch1")),
            ("flashVer", Value::string("FMLE/3.0")),
            ("capabilities", Value::Number(239.0)),
            ("fpad", Value::Boolean(false)),
            ("n", Value::Null),
            ("u", Value::Undefined),
            (
                "arr",
                Value::StrictArray(vec![Value::Number(1.5), Value::string("x")]),
            ),
            (
                "meta",
                Value::EcmaArray(vec![("width".into(), Value::Number(640.0))]),
            ),
            (
                "date",
                Value::Date {
                    millis: 1.7e12,
                    timezone: 0,
                },
            ),
            ("long", Value::LongString("ü".repeat(10))),
            ("xml", Value::XmlDocument("<a/>".into())),
            (
                "typed",
                Value::TypedObject {
                    class: "C".into(),
                    properties: vec![("k".into(), Value::Reference(3))],
                },
            ),
            ("unsupported", Value::Unsupported),
        ]);
        round_trip(&v);
        round_trip(&Value::EcmaArray(Vec::new()));
        round_trip(&Value::StrictArray(Vec::new()));
        round_trip(&Value::Number(f64::INFINITY));
    }

    #[test]
    fn long_strings_switch_form() {
        let s = "a".repeat(70_000);
        let mut buf = Vec::new();
        encode(&Value::String(s.clone()), &mut buf);
        assert_eq!(buf[0], marker::LONG_STRING);
        assert_eq!(decode(&buf).expect("decodes").0, Value::LongString(s));
    }

    #[test]
    fn known_bytes() {
        // "connect", 1.0, {app: "live"} as ffmpeg writes it.
        let mut buf = Vec::new();
        encode(&Value::string("connect"), &mut buf);
        encode(&Value::Number(1.0), &mut buf);
        encode(&Value::object([("app", Value::string("live"))]), &mut buf);
        let expect: &[u8] = &[
            0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3f, 0xf0, 0, 0, 0,
            0, 0, 0, 0x03, 0x00, 0x03, b'a', b'p', b'p', 0x02, 0x00, 0x04, b'l', b'i', b'v', b'e',
            0x00, 0x00, 0x09,
        ];
        assert_eq!(buf, expect);
        let all = decode_all(expect).expect("decodes");
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].as_str(), Some("connect"));
        assert_eq!(all[1].as_number(), Some(1.0));
        assert_eq!(all[2].get("app").and_then(Value::as_str), Some("live"));
    }

    #[test]
    fn truncated_input_errors() {
        let mut buf = Vec::new();
        encode(
            &Value::object([
                ("a", Value::Number(1.0)),
                ("b", Value::string("text")),
                ("c", Value::StrictArray(vec![Value::Boolean(true)])),
            ]),
            &mut buf,
        );
        for cut in 0..buf.len() {
            assert!(
                matches!(
                    decode(&buf[..cut]),
                    Err(Amf0Error::Truncated | Amf0Error::CountTooLarge(_))
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn ecma_array_without_end_marker_at_end_of_input() {
        let mut buf = vec![marker::ECMA_ARRAY, 0, 0, 0, 1];
        buf.extend_from_slice(&[0, 1, b'w']);
        encode(&Value::Number(2.0), &mut buf);
        let (v, used) = decode(&buf).expect("lenient");
        assert_eq!(used, buf.len());
        assert_eq!(v.get("w"), Some(&Value::Number(2.0)));
    }

    #[test]
    fn deep_nesting_rejected() {
        let mut buf = Vec::new();
        for _ in 0..(MAX_DEPTH + 5) {
            buf.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        buf.push(marker::NULL);
        assert_eq!(decode(&buf), Err(Amf0Error::TooDeep));

        let mut buf = Vec::new();
        for _ in 0..(MAX_DEPTH + 5) {
            buf.extend_from_slice(&[marker::OBJECT, 0, 1, b'k']);
        }
        assert_eq!(decode(&buf), Err(Amf0Error::TooDeep));

        // Just within the limit decodes.
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Value::StrictArray(vec![v]);
        }
        round_trip(&v);
    }

    #[test]
    fn huge_counts_rejected_before_allocating() {
        let buf = [marker::STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, marker::NULL];
        assert_eq!(decode(&buf), Err(Amf0Error::CountTooLarge(u32::MAX)));
        let buf = [marker::LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a'];
        assert_eq!(decode(&buf), Err(Amf0Error::Truncated));
    }

    #[test]
    fn bad_markers() {
        assert_eq!(decode(&[0x42]), Err(Amf0Error::UnknownMarker(0x42)));
        assert_eq!(decode(&[0x11]), Err(Amf0Error::Unsupported(0x11)));
        assert_eq!(decode(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 64) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Bias towards markers so that structure gets exercised.
                buf.push((x % 20) as u8);
            }
            let _ = decode_all(&buf);
        }
    }
}
