//! The Rhapsody adapter: messages a Rhapsody route delivers. What differs from the
//! standard mapping (see README.md for the public source of each fact):
//!
//! - the TCP wrapper framing (a configurable header/trailer around each message on a
//!   TCP communication point) is removed by the host's listener before the adapter sees
//!   the message, so `map-hl7` gets plain ER7;
//! - message metadata (Rhapsody message properties, sent as HTTP headers with a
//!   configurable prefix, default `X-Rhapsody-`) is kept as provenance: extensions on
//!   `meta` of every resource (event source `rhapsody-http`);
//! - batch files written by a Directory/File communication point (event source
//!   `rhapsody-file`): HL7 batch envelopes (FHS/BHS) or bare concatenated messages, or
//!   messages split by a configured separator (`file.style` = `sep:<text>`).

use ehrgate_sdk::envelope::{self, Envelope, FileStyle};
use ehrgate_sdk::site::{self, Site, config};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, Hl7Input, Output};

pub const PROVENANCE_BASE: &str = "urn:ehrgate:provenance:rhapsody:";
pub const DEFAULT_HEADER_PREFIX: &str = "X-Rhapsody-";
/// Message properties kept as provenance unless `metadata.properties` (comma-separated,
/// without the prefix) says otherwise.
pub const DEFAULT_PROPERTIES: &[&str] = &["messageid", "route", "inputcommpoint", "receivedtime"];
pub const EVENT_SOURCES: &[&str] = &["rhapsody-http", "rhapsody-file"];

fn map_one(input: &Hl7Input) -> Result<Output, AdapterError> {
    let site = Site::from_config(None);
    site::map_with(&site, &site, input)
}

/// The configured batch-file style (`file.style`), else detected.
pub fn file_style(text: &str) -> Result<FileStyle, AdapterError> {
    match config("file.style") {
        Some(s) => FileStyle::parse(&s).ok_or_else(|| AdapterError::Unsupported("config `file.style` is not hl7, nl, len<N> or sep:<text>".into())),
        None => Ok(envelope::detect_style(text)),
    }
}

pub struct Rhapsody;

impl Adapter for Rhapsody {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "rhapsody".into(),
            vendor: "Rhapsody".into(),
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
        let text = ehrgate_sdk::hl7::decode_bytes(body);
        match source {
            "rhapsody-file" => envelope::map_messages(&text, &file_style(&text)?, source, 0, map_one),
            "rhapsody-http" => {
                let env = Envelope::parse(&text);
                let mut out = envelope::map_messages(&env.payload, &FileStyle::Hl7, source, 0, map_one)?;
                let prefix = config("metadata.header-prefix").unwrap_or_else(|| DEFAULT_HEADER_PREFIX.into());
                // Only properties on the allow-list become provenance: route-defined
                // properties can carry PHI, paths or credentials.
                let allowed: Vec<String> = config("metadata.properties")
                    .unwrap_or_else(|| DEFAULT_PROPERTIES.join(","))
                    .split(',')
                    .map(|p| p.trim().to_ascii_lowercase())
                    .filter(|p| !p.is_empty())
                    .collect();
                let items: Vec<(String, String)> = env
                    .headers
                    .iter()
                    .filter_map(|(k, v)| {
                        let head = k.get(..prefix.len())?;
                        head.eq_ignore_ascii_case(&prefix).then(|| (k[prefix.len()..].to_ascii_lowercase(), v.clone()))
                    })
                    .filter(|(k, _)| allowed.contains(k))
                    .collect();
                if items.is_empty() {
                    out.warn("no Rhapsody message properties in the headers: no provenance kept");
                }
                envelope::add_provenance(&mut out, PROVENANCE_BASE, &items);
                Ok(out)
            }
            other => Err(AdapterError::unsupported(format!("no events handled from source `{other}`"))),
        }
    }
}

ehrgate_sdk::export_adapter!(Rhapsody);
