//! An inbound unit as the write-ahead log stores it: what arrived, from where,
//! when, and which adapter it was routed to (so a replay maps it the same way).

use ehrgate_lake::Micros;

use crate::units::{Unit, event_unit, hl7_unit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundKind {
    /// One HL7v2 message (from an MLLP connection).
    Hl7,
    /// A webhook / CDC event body.
    Event { event_id: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub kind: InboundKind,
    /// Where it came from: `mllp:<listener>` or the webhook source name.
    pub source: String,
    /// The adapter it is routed to; empty when no route matched (it is kept and
    /// quarantined as unrouted).
    pub adapter: String,
    pub received_at: Micros,
    /// The bytes exactly as received.
    pub raw: Vec<u8>,
}

const VERSION: u8 = 1;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn str(&mut self) -> Option<String> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

impl Inbound {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.raw.len() + 64);
        buf.push(VERSION);
        match &self.kind {
            InboundKind::Hl7 => buf.push(0),
            InboundKind::Event { event_id } => {
                buf.push(1);
                put_str(&mut buf, event_id.as_deref().unwrap_or(""));
            }
        }
        put_str(&mut buf, &self.source);
        put_str(&mut buf, &self.adapter);
        buf.extend_from_slice(&self.received_at.to_le_bytes());
        buf.extend_from_slice(&self.raw);
        buf
    }

    pub fn decode(bytes: &[u8]) -> Option<Inbound> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let kind = match r.u8()? {
            0 => InboundKind::Hl7,
            1 => InboundKind::Event { event_id: Some(r.str()?).filter(|s| !s.is_empty()) },
            _ => return None,
        };
        let source = r.str()?;
        let adapter = r.str()?;
        let received_at = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        Some(Inbound { kind, source, adapter, received_at, raw: r.0.to_vec() })
    }

    /// The unit the pipeline maps. `seq` (the log's sequence number) makes the
    /// bronze record id the same on a replay.
    pub fn unit(&self, seq: u64) -> Unit {
        match &self.kind {
            InboundKind::Hl7 => hl7_unit(self.raw.clone(), &self.source, self.received_at, seq),
            InboundKind::Event { event_id } => event_unit(self.raw.clone(), &self.source, event_id.clone(), self.received_at, seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for kind in [InboundKind::Hl7, InboundKind::Event { event_id: Some("e-1".into()) }, InboundKind::Event { event_id: None }] {
            let i = Inbound { kind, source: "mllp:adt".into(), adapter: "epic".into(), received_at: 1_700_000_000_000_000, raw: b"MSH|^~\\&|\x00\xff".to_vec() };
            assert_eq!(Inbound::decode(&i.encode()), Some(i));
        }
        assert_eq!(Inbound::decode(b"\x02garbage"), None);
        assert_eq!(Inbound::decode(b"\x01\x00\xff\xff"), None, "a length past the end is refused, not a panic");
    }
}
