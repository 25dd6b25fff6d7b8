//! A small XML writer: elements with attributes, every value escaped.
//!
//! ```text
//! Element { name, attrs: [(k, v)], children } ──serialize──▶ <name k="v">…</name>
//! ```

/// One XML element.
#[derive(Debug, Clone, Default)]
pub struct Element {
    name: &'static str,
    attrs: Vec<(&'static str, String)>,
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

    /// Adds a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    /// The document: an XML declaration, then this element, indented.
    pub fn document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        for _ in 0..depth {
            out.push_str("  ");
        }
        out.push('<');
        out.push_str(self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape(v, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str(" />\n");
            return;
        }
        out.push_str(">\n");
        for c in &self.children {
            c.write(out, depth + 1);
        }
        for _ in 0..depth {
            out.push_str("  ");
        }
        out.push_str("</");
        out.push_str(self.name);
        out.push_str(">\n");
    }
}

/// Appends `s` escaped for an attribute value in double quotes; control
/// characters XML 1.0 cannot carry are dropped, tabs and newlines become
/// character references so attribute normalisation keeps them.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_values() {
        let doc = Element::new("a")
            .attr("x", "<\"&'>\t\u{1}é")
            .child(Element::new("b"))
            .document();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <a x=\"&lt;&quot;&amp;&apos;&gt;&#9;é\">\n  <b />\n</a>\n"
        );
    }
}
