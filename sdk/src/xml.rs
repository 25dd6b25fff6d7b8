//! A small XML writer for manifests (DASH MPD, Smooth client manifest):
//! element names are static (trusted), every attribute value is escaped,
//! so no caller ever concatenates unescaped text.
//!
//! ```text
//!  Xml::new() ─▶ open("MPD", attrs) ─▶ empty("S", attrs) ─▶ close() ─▶ finish() ─▶ String
//!                 └─ attrs: &[(&'static str, String)] ── escape() ─▶ name="value"
//!
//!  Element { name, attrs, children } ──document(style)──▶ the same writer, recursively
//! ```
//!
//! Formats differ only in the declaration's encoding label and how an empty
//! element ends ([`Style`]); everything else is written one way.

/// Escapes text for use inside a double-quoted attribute value: markup
/// characters become entities, tabs and line breaks character references
/// (so attribute normalisation keeps them), and characters XML 1.0 does not
/// allow at all are dropped.
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
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
}

/// One attribute: a static name and a value escaped when written.
pub type Attr = (&'static str, String);

/// The spelling details in which formats' customs differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// The `encoding` label of the XML declaration (`UTF-8`, `utf-8`).
    pub encoding: &'static str,
    /// How an element without children ends (`/>`, ` />`).
    pub empty_end: &'static str,
}

impl Default for Style {
    /// `encoding="UTF-8"`, empty elements as `<e/>`.
    fn default() -> Self {
        Style {
            encoding: "UTF-8",
            empty_end: "/>",
        }
    }
}

/// An indented XML document under construction.
pub struct Xml {
    out: String,
    stack: Vec<&'static str>,
    style: Style,
}

impl Default for Xml {
    fn default() -> Self {
        Self::new()
    }
}

impl Xml {
    /// A document in the default [`Style`], with its XML declaration.
    pub fn new() -> Self {
        Self::with_style(Style::default())
    }

    /// A document in `style`, with its XML declaration.
    pub fn with_style(style: Style) -> Self {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"");
        out.push_str(style.encoding);
        out.push_str("\"?>\n");
        Xml {
            out,
            stack: Vec::new(),
            style,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.stack.len() {
            self.out.push_str("  ");
        }
    }

    fn tag(&mut self, name: &'static str, attrs: &[Attr], numbers: &[(&'static str, u64)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape(v, &mut self.out);
            self.out.push('"');
        }
        let mut digits = itoa::Buffer::new();
        for (k, v) in numbers {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            self.out.push_str(digits.format(*v));
            self.out.push('"');
        }
    }

    /// Opens an element that will have children.
    pub fn open(&mut self, name: &'static str, attrs: &[Attr]) {
        self.open_with(name, attrs, &[]);
    }

    /// Writes an element without children.
    pub fn empty(&mut self, name: &'static str, attrs: &[Attr]) {
        self.empty_with(name, attrs, &[]);
    }

    /// Writes an element without children whose attributes are all
    /// numbers (nothing to escape, no string per value): for the thousands
    /// of `<S>` and `<c>` entries of a long timeline.
    pub fn empty_numbers(&mut self, name: &'static str, numbers: &[(&'static str, u64)]) {
        self.empty_with(name, &[], numbers);
    }

    fn open_with(&mut self, name: &'static str, attrs: &[Attr], numbers: &[(&'static str, u64)]) {
        self.tag(name, attrs, numbers);
        self.out.push_str(">\n");
        self.stack.push(name);
    }

    fn empty_with(&mut self, name: &'static str, attrs: &[Attr], numbers: &[(&'static str, u64)]) {
        self.tag(name, attrs, numbers);
        self.out.push_str(self.style.empty_end);
        self.out.push('\n');
    }

    /// Closes the innermost open element (nothing when none is open).
    pub fn close(&mut self) {
        if let Some(name) = self.stack.pop() {
            self.indent();
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

/// One XML element, built up front and written as a whole.
#[derive(Debug, Clone, Default)]
pub struct Element {
    name: &'static str,
    attrs: Vec<Attr>,
    /// Numeric attributes, written after `attrs` without a string each.
    numbers: Vec<(&'static str, u64)>,
    children: Vec<Element>,
}

impl Element {
    /// An element with no attributes or children.
    pub fn new(name: &'static str) -> Self {
        Element {
            name,
            ..Element::default()
        }
    }

    /// Adds an attribute (escaped when written).
    pub fn attr(mut self, key: &'static str, value: impl ToString) -> Self {
        self.attrs.push((key, value.to_string()));
        self
    }

    /// Adds an attribute when `value` is `Some`.
    pub fn attr_opt(self, key: &'static str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.attr(key, v),
            None => self,
        }
    }

    /// Adds a numeric attribute (written after the others; an element
    /// with only numeric attributes costs one allocation, not one each).
    pub fn number(mut self, key: &'static str, value: u64) -> Self {
        self.numbers.push((key, value));
        self
    }

    /// Adds a numeric attribute when `value` is `Some`.
    pub fn number_opt(self, key: &'static str, value: Option<u64>) -> Self {
        match value {
            Some(v) => self.number(key, v),
            None => self,
        }
    }

    /// Adds a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    /// The document in `style`: an XML declaration, then this element,
    /// indented.
    pub fn document(&self, style: Style) -> String {
        let mut x = Xml::with_style(style);
        self.write(&mut x);
        x.finish()
    }

    fn write(&self, x: &mut Xml) {
        if self.children.is_empty() {
            x.empty_with(self.name, &self.attrs, &self.numbers);
            return;
        }
        x.open_with(self.name, &self.attrs, &self.numbers);
        for c in &self.children {
            c.write(x);
        }
        x.close();
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

    #[test]
    fn elements_write_in_their_style() {
        let style = Style {
            encoding: "utf-8",
            empty_end: " />",
        };
        let doc = Element::new("a")
            .attr("x", "<\"&'>\t\u{1}é")
            .attr_opt("y", None::<u32>)
            .child(Element::new("b").attr_opt("z", Some(1)))
            .document(style);
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <a x=\"&lt;&quot;&amp;&apos;&gt;&#9;é\">\n  <b z=\"1\" />\n</a>\n"
        );
        // Numeric attributes follow the others, in the order added.
        let doc = Element::new("a")
            .number("n", 18_446_744_073_709_551_615)
            .attr("s", "x")
            .child(
                Element::new("c")
                    .number("t", 0)
                    .number_opt("r", None)
                    .number("d", 7),
            )
            .document(Style::default());
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <a s=\"x\" n=\"18446744073709551615\">\n  <c t=\"0\" d=\"7\"/>\n</a>\n"
        );
    }
}
