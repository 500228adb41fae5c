//! HL7 acknowledgements built in the sender's own delimiters and version.
//!
//! Original mode (MSH-15/16 empty): AA when the message is durable and mapped, AE
//! (with an ERR segment naming the field) when it is invalid and quarantined, AR when
//! it could not be stored or routed. Enhanced mode (MSH-15 present): the accept
//! acknowledgement CA / CE / CR. MLLP senders wait for a reply to every frame, so by
//! default it is always sent; a listener can opt in to MSH-15's conditions (AL
//! always, NE never, ER only on error, SU only on success).

use std::sync::atomic::{AtomicU64, Ordering};

use ehrgate_sdk::hl7::{Delimiters, Message};

use crate::flow::Outcome;

/// The header fields an acknowledgement echoes, taken from the received message
/// (raw, still escaped, so they are copied as they were).
#[derive(Debug, Clone, Default)]
pub struct AckContext {
    pub delimiters: Delimiters,
    pub sending_app: String,
    pub sending_facility: String,
    pub receiving_app: String,
    pub receiving_facility: String,
    pub trigger: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    /// MSH-15: accept acknowledgement type (enhanced mode when present).
    pub accept_ack: Option<String>,
}

fn raw_field(m: &Message, n: usize) -> String {
    m.msh().field(n).raw().to_string()
}

impl AckContext {
    pub fn from_message(m: &Message) -> AckContext {
        // A letter (or digit) as field separator would make an unreadable ACK:
        // answer with the standard delimiters.
        if m.delimiters().field.is_alphanumeric() || m.delimiters().field.is_whitespace() {
            return AckContext { version: "2.5.1".into(), ..AckContext::fallback(m.raw().as_bytes()) };
        }
        AckContext {
            delimiters: *m.delimiters(),
            sending_app: raw_field(m, 3),
            sending_facility: raw_field(m, 4),
            receiving_app: raw_field(m, 5),
            receiving_facility: raw_field(m, 6),
            trigger: m.trigger_event().to_string(),
            control_id: m.control_id().to_string(),
            processing_id: raw_field(m, 11),
            // An ACK needs a version: the sender's, else 2.5.1.
            version: Some(m.version().trim().to_string()).filter(|v| !v.is_empty()).unwrap_or_else(|| "2.5.1".into()),
            accept_ack: Some(raw_field(m, 15)).filter(|s| !s.trim().is_empty()),
        }
    }

    /// For bytes that do not parse: the default delimiters, and MSH-10 if a plain
    /// split of the first segment finds one, so the sender can still match the NAK.
    pub fn fallback(raw: &[u8]) -> AckContext {
        let text = String::from_utf8_lossy(raw);
        let first = text.trim_start_matches('\u{feff}').split(['\r', '\n']).next().unwrap_or("");
        // The field separator is whatever follows "MSH" (any character, not a byte).
        let sep = first.strip_prefix("MSH").and_then(|r| r.chars().next());
        let fields: Vec<&str> = match sep {
            Some(c) if !c.is_alphanumeric() => first.split(c).collect(),
            _ => Vec::new(),
        };
        let mut delimiters = Delimiters::default();
        if let (Some(c), Some(enc)) = (sep, fields.get(1)) {
            let e: Vec<char> = enc.chars().collect();
            let distinct = |v: &[char]| v.iter().enumerate().all(|(i, a)| !v[..i].contains(a) && *a != c && !a.is_alphanumeric());
            if e.len() >= 4 && distinct(&e[..4]) {
                delimiters = Delimiters { field: c, component: e[0], repetition: e[1], escape: e[2], subcomponent: e[3], truncation: None };
            }
        }
        // fields[0] = "MSH", fields[1] = MSH-2, so MSH-n is fields[n - 1].
        let f = |n: usize| fields.get(n - 1).map(|s| s.to_string()).unwrap_or_default();
        AckContext {
            delimiters,
            sending_app: f(3),
            sending_facility: f(4),
            receiving_app: f(5),
            receiving_facility: f(6),
            control_id: f(10),
            processing_id: f(11),
            version: Some(f(12)).filter(|v| !v.is_empty() && v.len() < 10).unwrap_or_else(|| "2.5".into()),
            accept_ack: None,
            trigger: String::new(),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A control id for our ACK: unique within this process run and across runs (the
/// start time is part of it).
pub(crate) fn ack_control_id() -> String {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
    format!("ACK{start:x}{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn hl7_now() -> String {
    let micros = ehrgate_lake::now_micros();
    let secs = micros.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `PID-3` -> `PID^1^3`, `OBX(2)-5(3).1` -> `OBX^2^5^3^1` (segment, occurrence,
/// field, repetition, component) for ERR.
fn err_location(location: &str, d: &Delimiters) -> String {
    let c = d.component;
    let (seg_part, rest) = location.split_once('-').unwrap_or((location, ""));
    let seg: String = seg_part.chars().take_while(|ch| ch.is_ascii_alphanumeric()).collect();
    let number_in_parens = |s: &str| s.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(n, _)| n.trim().to_string());
    let occurrence = number_in_parens(seg_part).unwrap_or_else(|| "1".into());
    let (field_rep, component) = rest.split_once('.').map(|(a, b)| (a, Some(b))).unwrap_or((rest, None));
    let field: String = field_rep.chars().take_while(|ch| ch.is_ascii_digit()).collect();
    let mut out = format!("{seg}{c}{occurrence}{c}{field}");
    let rep = number_in_parens(field_rep);
    let component: Option<String> = component.map(|s| s.chars().take_while(|ch| ch.is_ascii_digit()).collect());
    if rep.is_some() || component.is_some() {
        out.push_str(&format!("{c}{}", rep.unwrap_or_else(|| "1".into())));
    }
    if let Some(comp) = component.filter(|s| !s.is_empty()) {
        out.push_str(&format!("{c}{comp}"));
    }
    out
}

pub(crate) fn clean(text: &str, d: &Delimiters) -> String {
    // Free text in an ACK: drop anything that would read as a delimiter.
    let specials = [d.field, d.component, d.repetition, d.escape, d.subcomponent, '\r', '\n'];
    text.chars().map(|ch| if specials.contains(&ch) { ' ' } else { ch }).take(200).collect()
}

/// The acknowledgement code (MSA-1) for `outcome`: AA/AE/AR, or CA/CE/CR in
/// enhanced mode (MSH-15 present).
pub fn code(ctx: &AckContext, outcome: &Outcome) -> &'static str {
    let rejected = rejected_code(outcome);
    match (&ctx.accept_ack, outcome) {
        (None, Outcome::Accepted) => "AA",
        // A valid message of a type the adapter does not map: it is stored (bronze,
        // and quarantine for reprocessing once an adapter maps it). Rejecting it
        // would stall the sender's queue on a message resending cannot fix.
        (None, Outcome::Rejected { kind, .. }) if kind == "unsupported" => "AA",
        // The adapter's upstream was unavailable: the sender should send it again.
        (None, Outcome::Rejected { kind, .. }) if kind == "transient" => "AR",
        // The header failed the receiver's checks (HL7 v2.5.1 2.9.2): reject.
        (None, Outcome::Rejected { .. }) if rejected.is_some() => "AR",
        (None, Outcome::Rejected { .. }) => "AE",
        (None, Outcome::Failed(_)) => "AR",
        (Some(_), Outcome::Accepted) => "CA",
        (Some(_), Outcome::Rejected { kind, .. }) if kind == "unsupported" => "CA",
        (Some(_), Outcome::Rejected { .. }) if rejected.is_some() => "CR",
        (Some(_), Outcome::Rejected { .. }) => "CE",
        (Some(_), Outcome::Failed(_)) => "CR",
    }
}

/// The acknowledgement for `outcome`, or `None` when the sender asked for none
/// and `honour_conditions` is set (enhanced mode, MSH-15 NE / ER on success / SU on
/// error).
pub fn build(ctx: &AckContext, outcome: &Outcome, honour_conditions: bool) -> Option<String> {
    let rejected = rejected_code(outcome);
    // An acknowledgement sent in is stored and quarantined, never acknowledged.
    if rejected == Some(200) {
        return None;
    }
    let d = &ctx.delimiters;
    let (f, c) = (d.field, d.component);
    let code = code(ctx, outcome);
    if let Some(mode) = ctx.accept_ack.as_ref().filter(|_| honour_conditions) {
        let ok = code == "CA";
        let send = match mode.trim().to_ascii_uppercase().as_str() {
            "NE" => false,
            "ER" => !ok,
            "SU" => ok,
            _ => true,
        };
        if !send {
            return None;
        }
    }
    let enc = d.encoding_characters();
    let msg_type = if ctx.trigger.is_empty() { "ACK".to_string() } else { format!("ACK{c}{}{c}ACK", ctx.trigger) };
    let processing = if ctx.processing_id.is_empty() { "P" } else { &ctx.processing_id };
    let mut out = format!(
        "MSH{f}{enc}{f}{}{f}{}{f}{}{f}{}{f}{}{f}{f}{msg_type}{f}{}{f}{processing}{f}{}\r",
        ctx.receiving_app,
        ctx.receiving_facility,
        ctx.sending_app,
        ctx.sending_facility,
        hl7_now(),
        ack_control_id(),
        ctx.version
    );
    let text = match outcome {
        Outcome::Accepted => String::new(),
        Outcome::Rejected { message, .. } | Outcome::Failed(message) => clean(message, d),
    };
    out.push_str(&format!("MSA{f}{code}{f}{}", ctx.control_id));
    if !text.is_empty() {
        out.push_str(&format!("{f}{text}"));
    }
    out.push('\r');
    if code != "AA" && code != "CA" {
        out.push_str(&err_segment(ctx, location_of(outcome), rejected.unwrap_or(207)));
    }
    Some(out)
}

fn location_of(outcome: &Outcome) -> Option<&str> {
    match outcome {
        Outcome::Rejected { location, .. } => location.as_deref(),
        _ => None,
    }
}

/// The HL7 table 0357 code of a header rejection (quarantine kind `rejected-NNN`).
fn rejected_code(outcome: &Outcome) -> Option<u16> {
    match outcome {
        Outcome::Rejected { kind, .. } => kind.strip_prefix("rejected-").and_then(|c| c.parse().ok()),
        _ => None,
    }
}

fn code_text(code: u16) -> &'static str {
    match code {
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        _ => "Application internal error",
    }
}

/// ERR with the location (when known) and the HL7 table 0357 code (207,
/// application internal error, unless the header was rejected), severity E.
fn err_segment(ctx: &AckContext, location: Option<&str>, code: u16) -> String {
    let text = code_text(code);
    let d = &ctx.delimiters;
    let (f, c, s) = (d.field, d.component, d.subcomponent);
    let loc = location.map(|l| err_location(l, d)).unwrap_or_default();
    let version: Vec<u32> = ctx.version.split('.').take(2).map(|p| p.parse::<u32>().unwrap_or(0)).collect();
    if version >= vec![2, 5] {
        // v2.5+: ERR-2 error location, ERR-3 error code, ERR-4 severity.
        format!("ERR{f}{f}{loc}{f}{code}{c}{text}{c}HL70357{f}E\r")
    } else {
        // Earlier versions: ERR-1 "error code and location" (segment^seq^field^code).
        let loc = if loc.is_empty() { format!("{c}{c}") } else { loc };
        format!("ERR{f}{loc}{c}{code}{s}{text}{s}HL70357\r")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(msg: &str) -> AckContext {
        AckContext::from_message(&Message::parse(msg).unwrap())
    }

    const ADT: &str = "MSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20240101120000||ADT^A01^ADT_A01|MSG00001|P|2.5.1\rPID|1||123^^^H^MR\r";

    #[test]
    fn aa_swaps_sender_and_receiver_and_echoes_the_control_id() {
        let ack = build(&ctx(ADT), &Outcome::Accepted, false).unwrap();
        let segs: Vec<&str> = ack.trim_end().split('\r').collect();
        assert_eq!(segs.len(), 2);
        let msh: Vec<&str> = segs[0].split('|').collect();
        assert_eq!(&msh[..6], &["MSH", "^~\\&", "RECVAPP", "RECVFAC", "SENDAPP", "SENDFAC"]);
        assert_eq!(msh[8], "ACK^A01^ACK");
        assert_ne!(msh[9], "MSG00001");
        assert_eq!((msh[10], msh[11]), ("P", "2.5.1"));
        assert_eq!(segs[1], "MSA|AA|MSG00001");
        Message::parse(&ack).expect("the ACK is itself valid HL7");
    }

    #[test]
    fn ae_names_the_field_in_err_and_uses_the_senders_delimiters() {
        let msg = "MSH!$%#@!A!B!C!D!20240101!!ADT$A04!X9!P!2.6\rPID!1\r";
        let out = Outcome::Rejected { kind: "invalid-input".into(), message: "PID-3 is required".into(), location: Some("PID-3".into()) };
        let ack = build(&ctx(msg), &out, false).unwrap();
        assert!(ack.starts_with("MSH!$%#@!C!D!A!B!"), "{ack}");
        assert!(ack.contains("\rMSA!AE!X9!PID-3 is required\r"), "{ack}");
        assert!(ack.contains("\rERR!!PID$1$3!207$Application internal error$HL70357!E\r"), "{ack}");
    }

    #[test]
    fn err_locations_keep_occurrence_repetition_and_component() {
        let d = Delimiters::default();
        assert_eq!(err_location("PID-3", &d), "PID^1^3");
        assert_eq!(err_location("OBX(2)-5", &d), "OBX^2^5");
        assert_eq!(err_location("PID-3(2).1", &d), "PID^1^3^2^1");
        assert_eq!(err_location("MSH", &d), "MSH^1^");
    }

    #[test]
    fn pre_2_5_err_uses_err_1() {
        let msg = ADT.replace("2.5.1", "2.3");
        let out = Outcome::Rejected { kind: "invalid-input".into(), message: "bad".into(), location: Some("PV1-2".into()) };
        let ack = build(&ctx(&msg), &out, false).unwrap();
        assert!(ack.contains("\rERR|PV1^1^2^207&Application internal error&HL70357\r"), "{ack}");
    }

    #[test]
    fn rejected_headers_get_ar_with_their_code_and_acks_get_no_ack() {
        let out = Outcome::Rejected { kind: "rejected-203".into(), message: "HL7 version `9.9` is not supported".into(), location: Some("MSH-12".into()) };
        let ack = build(&ctx(ADT), &out, false).unwrap();
        assert!(ack.contains("\rMSA|AR|MSG00001|"), "{ack}");
        assert!(ack.contains("\rERR||MSH^1^12|203^Unsupported version id^HL70357|E\r"), "{ack}");
        let out = Outcome::Rejected { kind: "rejected-101".into(), message: "MSH-10 is required".into(), location: Some("MSH-10".into()) };
        let enhanced = ADT.replace("|P|2.5.1", "|P|2.5.1|||AL|NE");
        assert!(build(&ctx(&enhanced), &out, true).unwrap().contains("MSA|CR|"), "enhanced mode: CR");
        let out = Outcome::Rejected { kind: "rejected-200".into(), message: "an acknowledgement".into(), location: Some("MSH-9".into()) };
        assert_eq!(build(&ctx(ADT), &out, false), None, "no ACK to an ACK");
    }

    #[test]
    fn ar_for_storage_failure_and_unrouted() {
        let ack = build(&ctx(ADT), &Outcome::Failed("disk full".into()), false).unwrap();
        assert!(ack.contains("\rMSA|AR|MSG00001|disk full\r"), "{ack}");
        let out = Outcome::Rejected { kind: "transient".into(), message: "upstream down".into(), location: None };
        assert!(build(&ctx(ADT), &out, false).unwrap().contains("MSA|AR|"));
        // No route is the gateway's configuration, not the sender's to fix by resending.
        let out = Outcome::Rejected { kind: "unrouted".into(), message: "no route".into(), location: None };
        assert!(build(&ctx(ADT), &out, false).unwrap().contains("MSA|AE|"));
        // Stored but not mapped (no mapping for the type): accepted, with a note.
        let out = Outcome::Rejected { kind: "unsupported".into(), message: "no mapping for DFT^P03".into(), location: None };
        let ack = build(&ctx(ADT), &out, false).unwrap();
        assert!(ack.contains("\rMSA|AA|MSG00001|no mapping for DFT^P03\r") || ack.contains("\rMSA|AA|MSG00001|no mapping for DFT P03\r"), "{ack}");
        assert!(!ack.contains("ERR|"), "{ack}");
    }

    #[test]
    fn enhanced_mode_accept_acks_follow_msh_15() {
        let with = |mode: &str| ADT.replace("|P|2.5.1", &format!("|P|2.5.1|||{mode}|NE"));
        assert!(build(&ctx(&with("AL")), &Outcome::Accepted, true).unwrap().contains("MSA|CA|MSG00001"));
        assert!(build(&ctx(&with("NE")), &Outcome::Accepted, true).is_none());
        assert!(build(&ctx(&with("ER")), &Outcome::Accepted, true).is_none());
        assert!(build(&ctx(&with("ER")), &Outcome::Failed("x".into()), true).unwrap().contains("MSA|CR|"));
        assert!(build(&ctx(&with("SU")), &Outcome::Failed("x".into()), true).is_none());
        // By default an MLLP sender always gets its reply, whatever MSH-15 says.
        assert!(build(&ctx(&with("NE")), &Outcome::Accepted, false).unwrap().contains("MSA|CA|MSG00001"));
    }

    #[test]
    fn fallback_finds_the_control_id_of_an_unparseable_message() {
        let c = AckContext::fallback(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|CTRL7|P|2.4\rgarbage");
        assert_eq!((c.control_id.as_str(), c.version.as_str(), c.sending_app.as_str()), ("CTRL7", "2.4", "A"));
        let c = AckContext::fallback(b"\xff\xfe");
        assert_eq!(c.control_id, "");
        // A non-ASCII byte where the field separator goes: no panic.
        let c = AckContext::fallback(b"MSH\xe9rest");
        assert_eq!(c.control_id, "");
        // The sender's own delimiters are used for the NAK.
        let c = AckContext::fallback(b"MSH!$%#@!A!B!C!D!2024!!ADT$A01!X1!P!2.6\rPID!broken");
        assert_eq!((c.delimiters.field, c.delimiters.component, c.control_id.as_str()), ('!', '$', "X1"));
    }
}
