//! A tiny XML writer: element names are static (trusted), every attribute
//! value is escaped, so no caller ever concatenates unescaped text.
//!
//! ```text
//!  Xml::new() ─▶ open("MPD", attrs) ─▶ empty("S", attrs) ─▶ close() ─▶ finish() ─▶ String
//!                 └─ attrs: &[(&'static str, String)] ── escape() ─▶ name="value"
//! ```

/// Escapes text for use inside a double-quoted attribute value.
pub fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            // Characters XML 1.0 does not allow at all are dropped.
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
}

/// One attribute: a static name and a value escaped when written.
pub type Attr = (&'static str, String);

/// An indented XML document under construction.
pub struct Xml {
    out: String,
    stack: Vec<&'static str>,
}

impl Default for Xml {
    fn default() -> Self {
        Self::new()
    }
}

impl Xml {
    /// A document with its XML declaration.
    pub fn new() -> Self {
        Xml {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            stack: Vec::new(),
        }
    }

    fn tag(&mut self, name: &'static str, attrs: &[Attr]) {
        for _ in 0..self.stack.len() {
            self.out.push_str("  ");
        }
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape(v, &mut self.out);
            self.out.push('"');
        }
    }

    /// Opens an element that will have children.
    pub fn open(&mut self, name: &'static str, attrs: &[Attr]) {
        self.tag(name, attrs);
        self.out.push_str(">\n");
        self.stack.push(name);
    }

    /// Writes an element without children.
    pub fn empty(&mut self, name: &'static str, attrs: &[Attr]) {
        self.tag(name, attrs);
        self.out.push_str("/>\n");
    }

    /// Closes the innermost open element (nothing when none is open).
    pub fn close(&mut self) {
        if let Some(name) = self.stack.pop() {
            for _ in 0..self.stack.len() {
                self.out.push_str("  ");
            }
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
    }

    /// Closes every open element and returns the text.
    pub fn finish(mut self) -> String {
        while !self.stack.is_empty() {
            self.close();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_values() {
        let mut x = Xml::new();
        x.open("a", &[("v", "<\"x\" & 'y'>\n\u{1}".into())]);
        x.empty("b", &[]);
        let s = x.finish();
        assert_eq!(
            s,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <a v=\"&lt;&quot;x&quot; &amp; &apos;y&apos;&gt;&#10;\">\n  <b/>\n</a>\n"
        );
    }
}
