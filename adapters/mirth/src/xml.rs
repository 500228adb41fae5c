//! Mirth Connect's XML serialisation of HL7v2 back to ER7 (pipe-delimited) text.
//!
//! Mirth's HL7 v2.x data type (non-strict parser) turns a message into
//! `<HL7Message><SEG><SEG.n><SEG.n.c>text</SEG.n.c>...</SEG.n>...</SEG>...</HL7Message>`:
//! one element per segment, per field repetition (`SEG.n` repeated), per component
//! (`SEG.n.c`) and per subcomponent (`SEG.n.c.s`); `MSH.1` holds the field
//! separator and `MSH.2` the encoding characters. A field or component without
//! children holds its text directly. Text is XML-escaped; HL7 escape sequences
//! (`\F\`, `\S\`...) are kept as they were in the ER7 text, so they are written back
//! unchanged.
//!
//! This is a small reader for exactly that shape (elements, text, the five XML
//! entities and character references, comments, a prolog); anything else is an
//! `invalid-input` error naming the position, never the content.

use ehrgate_sdk::AdapterError;

#[derive(Debug)]
struct Element {
    name: String,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

fn bad(msg: &str, pos: usize) -> AdapterError {
    AdapterError::invalid(format!("Mirth XML: {msg} at byte {pos}"), None)
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_misc(&mut self) -> Result<(), AdapterError> {
        loop {
            let t = self.rest().trim_start();
            self.pos = self.s.len() - t.len();
            if t.starts_with("<?") {
                let end = t.find("?>").ok_or_else(|| bad("unterminated processing instruction", self.pos))?;
                self.pos += end + 2;
            } else if t.starts_with("<!--") {
                let end = t.find("-->").ok_or_else(|| bad("unterminated comment", self.pos))?;
                self.pos += end + 3;
            } else {
                return Ok(());
            }
        }
    }

    fn element(&mut self, depth: usize) -> Result<Element, AdapterError> {
        if depth > 8 {
            return Err(bad("elements nested too deeply", self.pos));
        }
        let start = self.pos;
        let t = self.rest();
        if !t.starts_with('<') {
            return Err(bad("expected an element", start));
        }
        let close = t.find('>').ok_or_else(|| bad("unterminated tag", start))?;
        let tag = &t[1..close];
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().unwrap_or_default().to_owned();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
            return Err(bad("unexpected tag name", start));
        }
        self.pos += close + 1;
        let mut el = Element { name, children: Vec::new() };
        if self_closing {
            return Ok(el);
        }
        loop {
            let t = self.rest();
            if t.is_empty() {
                return Err(bad("element not closed", start));
            }
            if t.starts_with("</") {
                let end = t.find('>').ok_or_else(|| bad("unterminated end tag", self.pos))?;
                if t[2..end].trim() != el.name {
                    return Err(bad("mismatched end tag", self.pos));
                }
                self.pos += end + 1;
                return Ok(el);
            }
            if t.starts_with("<!--") {
                let end = t.find("-->").ok_or_else(|| bad("unterminated comment", self.pos))?;
                self.pos += end + 3;
                continue;
            }
            if t.starts_with('<') {
                let child = self.element(depth + 1)?;
                el.children.push(Node::Element(child));
                continue;
            }
            let end = t.find('<').unwrap_or(t.len());
            let text = unescape(&t[..end], self.pos)?;
            self.pos += end;
            el.children.push(Node::Text(text));
        }
    }
}

fn unescape(s: &str, pos: usize) -> Result<String, AdapterError> {
    if !s.contains('&') {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or_else(|| bad("unterminated entity", pos))?;
        let ent = &after[..end];
        let ch = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else {
                    ent.strip_prefix('#').and_then(|d| d.parse().ok())
                };
                n.and_then(char::from_u32).ok_or_else(|| bad("unknown entity", pos))?
            }
        };
        out.push(ch);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Element {
    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
    fn text(&self) -> String {
        self.children
            .iter()
            .map(|n| match n {
                Node::Text(t) => t.as_str(),
                Node::Element(_) => "",
            })
            .collect()
    }
    /// The number after `prefix.` in this element's name.
    fn index_after(&self, prefix: &str) -> Option<usize> {
        self.name.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok().filter(|n| *n > 0)
    }
}

/// Join `(index, text)` parts by `sep`, placing each at its index (1-based).
fn place(parts: Vec<(usize, String)>, sep: char) -> String {
    let max = parts.iter().map(|(i, _)| *i).max().unwrap_or(0);
    let mut slots = vec![String::new(); max];
    for (i, t) in parts {
        slots[i - 1] = t;
    }
    slots.join(&sep.to_string())
}

/// Whether `text` looks like Mirth's XML rather than ER7.
pub fn is_xml(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').trim_start().starts_with('<')
}

/// Convert Mirth's HL7v2 XML to ER7 text (segments ended by CR).
pub fn to_er7(xml: &str) -> Result<String, AdapterError> {
    let mut r = Reader { s: xml.trim_start_matches('\u{feff}'), pos: 0 };
    r.skip_misc()?;
    let root = r.element(0)?;
    r.skip_misc()?;
    if !r.rest().trim().is_empty() {
        return Err(bad("content after the root element", r.pos));
    }
    if root.name != "HL7Message" {
        return Err(AdapterError::invalid("Mirth XML: the root element is not HL7Message", None));
    }
    let msh = root.elements().next().filter(|e| e.name == "MSH").ok_or_else(|| AdapterError::invalid("Mirth XML: the first segment is not MSH", Some("MSH")))?;
    let field_of = |n: usize| msh.elements().find(|e| e.index_after("MSH") == Some(n)).map(Element::text);
    let fs = field_of(1).and_then(|t| t.chars().next()).unwrap_or('|');
    let enc = field_of(2).unwrap_or_else(|| "^~\\&".into());
    let mut ec = enc.chars();
    let (cs, rs) = (ec.next().unwrap_or('^'), ec.next().unwrap_or('~'));
    let ss = enc.chars().nth(3).unwrap_or('&');
    let mut out = String::with_capacity(xml.len() / 3);
    for seg in root.elements() {
        let id = seg.name.as_str();
        if id.len() != 3 || !id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return Err(AdapterError::invalid("Mirth XML: a child of HL7Message is not a segment", None));
        }
        // Field number -> repetitions.
        let mut fields: Vec<(usize, Vec<String>)> = Vec::new();
        for f in seg.elements() {
            let n = f.index_after(id).ok_or_else(|| AdapterError::invalid(format!("Mirth XML: unexpected element inside {id}"), Some(id)))?;
            if id == "MSH" && n <= 2 {
                continue;
            }
            let comps: Vec<(usize, String)> = f
                .elements()
                .filter_map(|c| {
                    let ci = c.index_after(&f.name)?;
                    let subs: Vec<(usize, String)> = c.elements().filter_map(|s| Some((s.index_after(&c.name)?, s.text()))).collect();
                    Some((ci, if subs.is_empty() { c.text() } else { place(subs, ss) }))
                })
                .collect();
            let value = if comps.is_empty() { f.text() } else { place(comps, cs) };
            match fields.iter_mut().find(|(k, _)| *k == n) {
                Some((_, reps)) => reps.push(value),
                None => fields.push((n, vec![value])),
            }
        }
        let joined: Vec<(usize, String)> = fields.into_iter().map(|(n, reps)| (n, reps.join(&rs.to_string()))).collect();
        out.push_str(id);
        if id == "MSH" {
            out.push(fs);
            out.push_str(&enc);
            // MSH-3 is the first field after the encoding characters.
            let shifted: Vec<(usize, String)> = joined.into_iter().map(|(n, v)| (n - 2, v)).collect();
            if !shifted.is_empty() {
                out.push(fs);
                out.push_str(&place(shifted, fs));
            }
        } else if !joined.is_empty() {
            out.push(fs);
            out.push_str(&place(joined, fs));
        }
        out.push('\r');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_shapes() {
        let xml = "<?xml version=\"1.0\"?><HL7Message><MSH><MSH.1>|</MSH.1><MSH.2>^~\\&amp;</MSH.2><MSH.3><MSH.3.1>APP</MSH.3.1></MSH.3>\
            <MSH.9><MSH.9.1>ADT</MSH.9.1><MSH.9.2>A01</MSH.9.2></MSH.9></MSH>\
            <PID><PID.3><PID.3.1>1</PID.3.1><PID.3.4><PID.3.4.1>A</PID.3.4.1><PID.3.4.2>1.2</PID.3.4.2></PID.3.4></PID.3>\
            <PID.3><PID.3.1>2</PID.3.1></PID.3><PID.5>X &lt;Y&gt;</PID.5><!-- c --></PID></HL7Message>";
        assert_eq!(to_er7(xml).unwrap(), "MSH|^~\\&|APP||||||ADT^A01\rPID|||1^^^A&1.2~2||X <Y>\r");
    }

    #[test]
    fn malformed_is_invalid_input_without_content() {
        for bad in ["<HL7Message><MSH>", "<Other/>", "<HL7Message><PID/></HL7Message>", "<HL7Message><MSH><MSH.1>|</MSH.1></MSX></HL7Message>", "<HL7Message><MSH/></HL7Message>&secret;"] {
            match to_er7(bad) {
                Err(AdapterError::InvalidInput { message, .. }) => assert!(!message.contains("secret"), "{message}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
