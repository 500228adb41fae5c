//! The Infor Cloverleaf adapter: messages a Cloverleaf thread delivers. What differs
//! from the standard mapping (see README.md for the public source of each fact):
//!
//! - transport: MLLP-style framing with transport-level ACK/NAK ("MLLP2") and
//!   user-defined start/end block framing are handled by the host's listener, so
//!   `map-hl7` gets plain ER7;
//! - batch files written by a file protocol thread (event source `cloverleaf-file`):
//!   length-prefixed records (`len10`: each message preceded by its length as ten
//!   ASCII digits; other widths by `len<N>`), one message per line (`nl`), or HL7 batch
//!   envelopes. `file.style` sets the style; without it a length prefix is detected
//!   and anything else is read with the HL7 batch rules.

use ehrgate_sdk::envelope::{self, FileStyle};
use ehrgate_sdk::site::{self, Site, config};
use ehrgate_sdk::{Adapter, AdapterError, AdapterInfo, Hl7Input, Output};

pub const EVENT_SOURCES: &[&str] = &["cloverleaf-file"];

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

pub struct Cloverleaf;

impl Adapter for Cloverleaf {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "cloverleaf".into(),
            vendor: "Infor Cloverleaf".into(),
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
        match source {
            "cloverleaf-file" => {
                let text = ehrgate_sdk::hl7::decode_bytes(body);
                envelope::map_messages(&text, &file_style(&text)?, source, 0, map_one)
            }
            other => Err(AdapterError::unsupported(format!("no events handled from source `{other}`"))),
        }
    }
}

ehrgate_sdk::export_adapter!(Cloverleaf);
