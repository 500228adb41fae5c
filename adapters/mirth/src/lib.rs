//! The Mirth Connect (NextGen Connect) adapter: messages a Mirth channel forwards
//! over MLLP or its HTTP Sender. What differs from the standard mapping (see README.md
//! for the public source of each fact):
//!
//! - a channel may send Mirth's XML serialisation of HL7v2 instead of ER7: it is
//!   converted back ([`xml`]) and mapped as usual;
//! - over HTTP, the channel and message metadata the channel puts in headers (channel
//!   id and name, message id, server id; the header names are configurable) are kept as
//!   provenance: extensions on `meta` of every resource (event source `mirth-http`).
//!
//! Mirth forwards what the upstream system sent, so the clinical conventions are the
//! site's ([`ehrgate_sdk::site`]).

pub mod xml;

use ehrgate_sdk::envelope::{self, Envelope, FileStyle};
use ehrgate_sdk::site::{self, Site, config};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, Hl7Input, Output};

/// The base of the provenance extension URLs; the metadata name follows.
pub const PROVENANCE_BASE: &str = "urn:ehrgate:provenance:mirth:";

/// Metadata kept as provenance: (name, config key of the header name, default header).
pub const METADATA: &[(&str, &str, &str)] = &[
    ("channel-id", "header.channel-id", "X-Mirth-Channel-Id"),
    ("channel-name", "header.channel-name", "X-Mirth-Channel-Name"),
    ("message-id", "header.message-id", "X-Mirth-Message-Id"),
    ("server-id", "header.server-id", "X-Mirth-Server-Id"),
];

/// Event sources handled.
pub const EVENT_SOURCES: &[&str] = &["mirth-http"];

fn map_one(input: &Hl7Input) -> Result<Output, AdapterError> {
    let site = Site::from_config(None);
    if xml::is_xml(&input.raw) {
        let er7 = xml::to_er7(&input.raw)?;
        ehrgate_sdk::host::counter_add("mirth_xml_messages", 1);
        return site::map_with(&site, &site, &Hl7Input { raw: er7, ..input.clone() });
    }
    site::map_with(&site, &site, input)
}

pub struct Mirth;

impl Adapter for Mirth {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "mirth".into(),
            vendor: "NextGen Healthcare (Mirth Connect)".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hl7_message_types: ehrgate_sdk::v2fhir::STANDARD_MESSAGE_TYPES.iter().map(|s| s.to_string()).collect(),
            fhir_resource_types: vec!["*".into()],
            event_sources: EVENT_SOURCES.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn map_hl7(msg: &Hl7Input) -> Result<Output, AdapterError> {
        map_one(msg)
    }

    fn handle_event(source: &str, body: &[u8]) -> Result<Output, AdapterError> {
        if !EVENT_SOURCES.contains(&source) {
            return Err(AdapterError::unsupported(format!("no events handled from source `{source}`")));
        }
        let text = ehrgate_sdk::hl7::decode_bytes(body);
        let env = Envelope::parse(&text);
        let mut out = if xml::is_xml(&env.payload) {
            map_one(&Hl7Input { raw: env.payload.to_string(), source: source.into(), received_at_ms: 0 })?
        } else {
            envelope::map_messages(&env.payload, &FileStyle::Hl7, source, 0, map_one)?
        };
        let items: Vec<(String, String)> = METADATA
            .iter()
            .filter_map(|(name, key, default)| {
                let header = config(key).unwrap_or_else(|| default.to_string());
                Some((name.to_string(), env.header(&header)?.to_owned()))
            })
            .collect();
        if items.is_empty() {
            out.warn("no Mirth channel metadata headers: no provenance kept");
        }
        envelope::add_provenance(&mut out, PROVENANCE_BASE, &items);
        Ok(out)
    }
}

ehrgate_sdk::export_adapter!(Mirth);
