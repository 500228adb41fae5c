//! Tests of the HL7v2 parser, against the shared sample corpus and by hand.

use super::*;
use std::path::PathBuf;

// ---------------------------------------------------------------------------------
// Corpus helpers

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/hl7");
    assert!(
        dir.is_dir(),
        "HL7 sample corpus not found at {}: the tests expect the `shared/` folder beside the repository checkout",
        dir.display()
    );
    dir
}

fn read(name: &str) -> Vec<u8> {
    let p = data_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn read_text(name: &str) -> String {
    decode_bytes(&read(name)).into_owned()
}

/// Every sample, sorted by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(data_dir())
        .expect("list the corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read sample"),
            )
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 60,
        "expected the 64-file corpus, found {} files",
        files.len()
    );
    files
}

fn one(text: &str) -> Message<'_> {
    Message::parse(text).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

fn get<'a>(m: &Message<'a>, path: &str) -> Option<String> {
    m.get(path).map(Cow::into_owned)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

// ---------------------------------------------------------------------------------
// The whole corpus

const MALFORMED: &[(&str, &str)] = &[
    ("malformed_batch_nested_bhs.hl7", "BHS"),
    ("malformed_batch_no_msh.hl7", "EVN"),
    ("malformed_file_nested_fhs.hl7", "FHS"),
    ("malformed_file_no_msh.hl7", "EVN"),
    ("malformed_msh_duplicate_encoding_chars_v26.hl7", "MSH-2"),
    ("malformed_msh_missing_msh9_v26.hl7", "MSH-9"),
    ("malformed_msh_no_encoding_chars.hl7", "MSH-2"),
    ("malformed_msh_too_many_encoding_chars.hl7", "MSH-2"),
];

#[test]
fn corpus_valid_files_parse_and_malformed_fail_with_location() {
    let mut malformed_seen = 0;
    let mut messages = 0;
    for (name, bytes) in corpus() {
        let text = decode_bytes(&bytes);
        let result = parse_batch(&text);
        if name.starts_with("malformed_") {
            malformed_seen += 1;
            let expected = MALFORMED
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name}: a malformed sample this test does not know"))
                .1;
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name}: parse_batch accepted a malformed file"));
            assert_eq!(err.location.as_deref(), Some(expected), "{name}: {err}");
            assert!(
                err.segment_index.is_some(),
                "{name}: no segment index in {err:?}"
            );
            if expected.starts_with("MSH") {
                let err = Message::parse(&text).expect_err(&name);
                assert_eq!(err.location.as_deref(), Some(expected), "{name}: {err}");
            }
            assert_no_input_in_error(&name, &text, &err);
        } else {
            let batch = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!batch.messages.is_empty(), "{name}: no message");
            for m in &batch.messages {
                messages += 1;
                assert_eq!(m.segments()[0].id(), "MSH", "{name}");
                assert!(m.raw().starts_with("MSH"), "{name}");
                // Every segment id is a plain 3-character id.
                for seg in m.segments() {
                    assert!(
                        seg.id().len() == 3 && seg.id().bytes().all(|b| b.is_ascii_alphanumeric()),
                        "{name}: odd segment id {:?}",
                        seg.id()
                    );
                }
                // Fragments without MSH-9 (see Message::parse) are the only ones
                // without a message code.
                let fragment = matches!(
                    name.as_str(),
                    "nonstandard_delimiters_dollar_percent.hl7"
                        | "msh_only_cp1252_byte.hl7"
                        | "adt_pid_zin_z_segment_v25.hl7"
                );
                assert_eq!(
                    m.message_code().is_empty(),
                    fragment,
                    "{name}: message code {:?}",
                    m.message_code()
                );
            }
            if !name.starts_with("batch_") {
                assert_eq!(batch.messages.len(), 1, "{name}");
                // A single message parses the same way on its own.
                let m = Message::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    m.segments().len(),
                    batch.messages[0].segments().len(),
                    "{name}"
                );
            }
        }
    }
    assert_eq!(
        malformed_seen,
        MALFORMED.len(),
        "every malformed sample must be in the corpus"
    );
    assert!(messages >= 58, "only {messages} messages parsed");
}

/// Errors must not quote the input (PHI): no token of 5+ characters from the input
/// may appear in the error text.
fn assert_no_input_in_error(name: &str, text: &str, err: &ParseError) {
    let shown = format!("{err} {:?}", err.location);
    for tok in text.split(|c: char| "|^~\\&\r\n".contains(c)) {
        if tok.len() >= 5 {
            assert!(
                !shown.contains(tok),
                "{name}: error {shown:?} quotes input {tok:?}"
            );
        }
    }
}

#[test]
fn first_components_are_the_components() {
    let m = Message::parse("MSH|^~\\&|A\rPID|1||a^b^^d&e~x|^|\rMSH").unwrap();
    for seg in m.segments() {
        for f in seg.fields() {
            for rep in f.repetitions().chain([f.rep(9)]) {
                let c: [Component<'_>; 6] = rep.first_components();
                for (i, c) in c.iter().enumerate() {
                    assert_eq!(c.raw(), rep.component(i + 1).raw());
                    assert_eq!(c.value(), rep.component(i + 1).value());
                }
            }
        }
    }
}

#[test]
fn malformed_errors_carry_segment_index() {
    let e = parse_batch(&read_text("malformed_batch_nested_bhs.hl7")).unwrap_err();
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("BHS"), Some(4))
    );
    let e = parse_batch(&read_text("malformed_batch_no_msh.hl7")).unwrap_err();
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("EVN"), Some(2))
    );
    let e = parse_batch(&read_text("malformed_file_nested_fhs.hl7")).unwrap_err();
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("FHS"), Some(5))
    );
    assert!(e.message.contains("more than one FHS"), "{e}");
    let e = parse_batch(&read_text("malformed_file_no_msh.hl7")).unwrap_err();
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("EVN"), Some(3))
    );
    let e = parse_batch(&read_text("malformed_msh_missing_msh9_v26.hl7")).unwrap_err();
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("MSH-9"), Some(1))
    );
}

// ---------------------------------------------------------------------------------
// Delimiters

#[test]
fn delimiters_dollar_percent_from_msh() {
    let text = read_text("nonstandard_delimiters_dollar_percent.hl7");
    let m = one(&text);
    let d = *m.delimiters();
    assert_eq!(
        (d.field, d.component, d.repetition, d.escape, d.subcomponent),
        ('$', '%', '~', '\\', '&')
    );
    assert_eq!(d.truncation, None);
    assert_eq!(get(&m, "MSH-1"), s("$"));
    assert_eq!(get(&m, "MSH-2"), s("%~\\&"));
    assert_eq!(get(&m, "MSH-3"), s("GHH LAB"));
    assert_eq!(get(&m, "PID-3"), s("555-44-4444"));
    assert_eq!(get(&m, "PID-5"), s("EVERYWOMAN"));
    assert_eq!(get(&m, "PID-5.2"), s("EVE"));
    assert_eq!(get(&m, "PID-5.3"), s("E"));
    assert_eq!(get(&m, "PID-5.4"), None);
    assert_eq!(get(&m, "PID-5.6"), s("L"));
    assert_eq!(get(&m, "PID-5.7"), None);
    let pid = m.segment("PID").unwrap();
    assert_eq!(pid.field_count(), 5);
    assert_eq!(pid.field(5).rep(1).components().count(), 6);
    assert_eq!(pid.field(5).raw(), "EVERYWOMAN%EVE%E%%%L");
}

#[test]
fn delimiters_bang_dollar_r_question_at() {
    let text = read_text("msh_custom_delimiters_bang_dollar.hl7");
    let m = one(&text);
    let d = *m.delimiters();
    assert_eq!(
        (d.field, d.component, d.repetition, d.escape, d.subcomponent),
        ('!', '$', 'r', '?', '@')
    );
    assert_eq!(get(&m, "MSH-2"), s("$r?@"));
    assert_eq!(get(&m, "MSH-3"), s("LIP"));
    assert_eq!(get(&m, "MSH-7"), s("20111207121030"));
    // The sample writes MSH-9 with '^', which is not a delimiter here: one component.
    assert_eq!(m.message_code(), "RSP^SLI^RSP_K11");
    assert_eq!(m.trigger_event(), "");
    assert_eq!(m.control_id(), "430102");
    assert_eq!(m.version(), "2.5");
    assert_eq!(get(&m, "MSH-17"), s("IT"));
    assert_eq!(get(&m, "MSH-19"), s("EN"));
    assert_eq!(m.msh().field_count(), 19);
    // The message's own escape character and delimiters drive escaping.
    assert_eq!(unescape("a?S?b?R?c?E?d", &d), "a$brc?d");
    assert_eq!(escape("x$yrz", &d), "x?S?y?R?z");
}

#[test]
fn delimiters_truncation_character_v27() {
    let text = read_text("rsp_k22_pdq_v27_truncation_char.hl7");
    let m = one(&text);
    assert_eq!(m.delimiters().truncation, Some('#'));
    assert_eq!(m.delimiters().escape, '\\');
    assert_eq!(get(&m, "MSH-2"), s("^~\\&#"));
    assert_eq!(m.message_code(), "RSP");
    assert_eq!(m.trigger_event(), "K22");
    assert_eq!(get(&m, "MSH-9.3"), s("RSP_K21"));
    assert_eq!(m.version(), "2.7");
    assert_eq!(get(&m, "PID-3.4"), s("GATEWAY"));
    assert_eq!(get(&m, "PID-3.4.2"), s("1.3.6.1.4.1.21367.2011.2.5.17"));
    assert_eq!(get(&m, "PID-3.4.3"), s("ISO"));
    assert_eq!(get(&m, "QPD-3(2).2"), s("SMITH"));
    assert_eq!(unescape("a\\P\\b", m.delimiters()), "a#b");
    assert_eq!(escape("a#b", m.delimiters()), "a\\P\\b");
}

#[test]
fn delimiters_doubled_escape_character_is_accepted() {
    for name in [
        "adt_a01_crlf_literal_backslash_r_v26.hl7",
        "adt_a01_lf_literal_backslash_r_v26.hl7",
    ] {
        let text = read_text(name);
        let m = one(&text);
        assert_eq!(*m.delimiters(), Delimiters::default(), "{name}");
        assert_eq!(m.msh().field(2).raw(), "^~\\\\&", "{name}");
        assert_eq!(m.message_code(), "ADT");
        assert_eq!(m.trigger_event(), "A01");
        assert_eq!(m.control_id(), "102");
        assert_eq!(m.segments().len(), 8, "{name}");
        // A literal `\r` is an unterminated escape: kept as written.
        assert_eq!(get(&m, "AL1(2)-5(2)"), s("VOMITING\\r"), "{name}");
        assert_eq!(get(&m, "OBX-17"), s("\\r"), "{name}");
        if name.contains("crlf") {
            let msh = m.msh();
            let last = msh.field(msh.field_count());
            assert_eq!(last.component(3).value(), "IPv6\\r\"", "{name}");
        }
        assert_eq!(get(&m, "PID-3(2)"), s("1234568965"));
        assert_eq!(get(&m, "PID-3(2).4"), s("USA"));
    }
}

#[test]
fn msh2_validation() {
    let loc = |t: &str| Message::parse(t).err().and_then(|e| e.location);
    assert_eq!(loc("MSH"), Some("MSH-1".into()));
    assert_eq!(loc("MSH\rPID|1"), Some("MSH-1".into()));
    assert_eq!(loc("MSH|"), Some("MSH-2".into()));
    assert_eq!(loc("MSH||A|B"), Some("MSH-2".into()));
    assert_eq!(loc("MSH|^~|A"), Some("MSH-2".into()), "too short");
    assert_eq!(loc("MSH|^~\\&#@|A"), Some("MSH-2".into()), "too long");
    assert_eq!(loc("MSH|^&&^|A"), Some("MSH-2".into()), "repeated");
    assert_eq!(
        loc("MSH^^~\\&^A"),
        Some("MSH-2".into()),
        "field separator reused"
    );
    assert_eq!(
        loc("MSH|^~\\&#^|A"),
        Some("MSH-2".into()),
        "truncation reuses a delimiter"
    );
    assert_eq!(loc("PID|1|2"), Some("PID".into()));
    assert_eq!(loc(""), None);
    assert_eq!(loc("\r\n\n  \r"), None);
    assert!(Message::parse("").is_err());
    // MSH-9 is required once a control id is there.
    assert_eq!(
        loc("MSH|^~\\&|A|B|C|D|20200101||^A01|CTRL1|P|2.5"),
        Some("MSH-9".into())
    );
    assert_eq!(
        loc("MSH|^~\\&|A|B|C|D|20200101|||CTRL1|P|2.5"),
        Some("MSH-9".into())
    );
    assert!(Message::parse("MSH|^~\\&|A|B|C|D|20200101||ADT^A01|CTRL1|P|2.5").is_ok());
    // The doubled escape with a truncation character.
    let m = one("MSH|^~\\\\&#|A||||||ADT^A01|1|P|2.7");
    assert_eq!(m.delimiters().truncation, Some('#'));
    assert_eq!(m.delimiters().subcomponent, '&');
}

#[test]
fn non_ascii_delimiters() {
    let text = "MSH§¤µ¬ß§APP§FAC§§§§§ADT¤A01§ID1§P§2.5\nPID§§§MRN1¤¤¤AUTHä1ßOIDµMRN2¤¤¤AUTH2§§NAME¤GIVEN¬F¬¬T¬Xß2";
    let m = one(text);
    let d = *m.delimiters();
    assert_eq!(
        (d.field, d.component, d.repetition, d.escape, d.subcomponent),
        ('§', '¤', 'µ', '¬', 'ß')
    );
    assert_eq!(m.message_code(), "ADT");
    assert_eq!(m.trigger_event(), "A01");
    assert_eq!(m.control_id(), "ID1");
    assert_eq!(get(&m, "MSH-1"), s("§"));
    assert_eq!(get(&m, "MSH-2"), s("¤µ¬ß"));
    assert_eq!(get(&m, "PID-3"), s("MRN1"));
    assert_eq!(get(&m, "PID-3.4"), s("AUTHä1"));
    assert_eq!(get(&m, "PID-3.4.2"), s("OID"));
    assert_eq!(get(&m, "PID-3(2)"), s("MRN2"));
    assert_eq!(get(&m, "PID-5.2"), s("GIVEN§ßX"));
    assert_eq!(get(&m, "PID-5.2.2"), s("2"));
    assert_eq!(escape("a¤b", &d), "a¬S¬b");
}

// ---------------------------------------------------------------------------------
// Escapes

#[test]
fn unescape_each_sequence() {
    let d = Delimiters::default();
    let u = |t: &str| unescape(t, &d).into_owned();
    assert_eq!(u("a\\F\\b"), "a|b");
    assert_eq!(u("a\\S\\b"), "a^b");
    assert_eq!(u("a\\T\\b"), "a&b");
    assert_eq!(u("a\\R\\b"), "a~b");
    assert_eq!(u("a\\E\\b"), "a\\b");
    assert_eq!(u("\\X41\\"), "A");
    assert_eq!(u("\\X4142\\"), "AB");
    assert_eq!(u("caf\\XC3A9\\"), "café", "hex bytes that are UTF-8");
    assert_eq!(
        u("caf\\Xe9\\"),
        "café",
        "hex bytes that are not UTF-8: Latin-1"
    );
    assert_eq!(u("\\X0D0A\\"), "\r\n");
    assert_eq!(u("line1\\.br\\line2"), "line1\nline2");
    assert_eq!(u("\\H\\bold\\N\\ normal"), "bold normal");
    assert_eq!(u("\\P\\"), "\\P\\", "no truncation character: unknown");
    assert_eq!(u("\\Zvendor\\x"), "\\Zvendor\\x", "unknown sequences kept");
    assert_eq!(u("\\.sp\\"), "\\.sp\\");
    assert_eq!(u("\\X4\\"), "\\X4\\", "odd hex kept");
    assert_eq!(u("\\XZZ\\"), "\\XZZ\\", "bad hex kept");
    assert_eq!(u("\\X\\"), "\\X\\");
    assert_eq!(u("C:\\dir"), "C:\\dir", "unterminated kept");
    assert_eq!(u("end\\"), "end\\");
    assert_eq!(u("\\\\"), "\\\\");
    assert_eq!(u("\\F\\\\S\\\\T\\\\R\\\\E\\"), "|^&~\\");
    assert_eq!(
        u("x\\Q\\y\\F\\z"),
        "x\\Q\\y|z",
        "an unknown sequence does not hide the next one"
    );
    // Borrowed when nothing changes.
    assert!(matches!(unescape("plain text", &d), Cow::Borrowed(_)));
    assert!(matches!(unescape("C:\\dir", &d), Cow::Borrowed(_)));
    assert!(matches!(unescape("a\\F\\b", &d), Cow::Owned(_)));
}

#[test]
fn escape_reverses_unescape() {
    let d = Delimiters::default();
    assert_eq!(escape("plain", &d), "plain");
    assert!(matches!(escape("plain", &d), Cow::Borrowed(_)));
    assert_eq!(
        escape("a|b^c&d~e\\f", &d),
        "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    );
    assert_eq!(escape("l1\nl2\r\n", &d), "l1\\.br\\l2\\X0D\\\\.br\\");
    assert_eq!(escape("a#b", &d), "a#b", "no truncation character");
    for v in ["", "x", "|^~\\&", "\\F\\", "a\r\nb", "é|ü", "\\", "\\\\E\\"] {
        assert_eq!(unescape(&escape(v, &d), &d), v, "round trip of {v:?}");
    }
}

#[test]
fn escapes_in_samples() {
    let text = read_text("msh_escape_highlight_v25.hl7");
    let m = one(&text);
    assert_eq!(
        m.msh().field(8).raw(),
        "\\H\\HIGHLIGHTED\\N\\TEXT\\H\\IMPORTANT\\N\\"
    );
    assert_eq!(get(&m, "MSH-8"), s("HIGHLIGHTEDTEXTIMPORTANT"));

    let text = read_text("adt_a01_ghh_v28_full.hl7");
    let m = one(&text);
    assert_eq!(
        get(&m, "PV1-14"),
        s("NHS Provider-General (inc.A&E-this Hosp)")
    );
    assert_eq!(
        m.segment("PV1").unwrap().field(14).raw(),
        "NHS Provider-General (inc.A\\T\\E-this Hosp)"
    );
}

// ---------------------------------------------------------------------------------
// Paths and the accessor API

#[test]
fn paths_repetitions_components_subcomponents() {
    let text = read_text("msh_pid_repetitions_subcomponents_v24.hl7");
    let m = one(&text);
    assert_eq!(m.segments().len(), 2);
    assert_eq!(get(&m, "MSH-1"), s("|"));
    assert_eq!(get(&m, "MSH-2"), s("^~\\&"));
    assert_eq!(get(&m, "MSH-3"), s("GHH LAB"));
    assert_eq!(get(&m, "MSH-9"), s("ORU"));
    assert_eq!(get(&m, "MSH-9.2"), s("R01"));
    assert_eq!(get(&m, "MSH-10"), s("CNTRL-3456"));
    assert_eq!(
        (
            m.message_code(),
            m.trigger_event(),
            m.control_id(),
            m.version()
        ),
        ("ORU", "R01", "CNTRL-3456", "2.4")
    );

    assert_eq!(get(&m, "PID-1"), s("Field1"));
    assert_eq!(get(&m, "PID-2"), s("Component1"));
    assert_eq!(get(&m, "PID-2.2"), s("Component2"));
    assert_eq!(get(&m, "PID-2.3"), None);
    assert_eq!(get(&m, "PID-3.1"), s("Component1"));
    assert_eq!(get(&m, "PID-3.2"), s("Sub-Component1"));
    assert_eq!(get(&m, "PID-3.2.1"), s("Sub-Component1"));
    assert_eq!(get(&m, "PID-3.2.2"), s("Sub-Component2"));
    assert_eq!(get(&m, "PID-3.2.3"), None);
    assert_eq!(get(&m, "PID-3.3"), s("Component3"));
    assert_eq!(get(&m, "PID-3(1).3"), s("Component3"));
    assert_eq!(get(&m, "PID-4"), s("Repeat1"));
    assert_eq!(get(&m, "PID-4(1)"), s("Repeat1"));
    assert_eq!(get(&m, "PID-4(2)"), s("Repeat2"));
    assert_eq!(get(&m, "PID-4(2).1"), s("Repeat2"));
    assert_eq!(get(&m, "PID-4(3)"), None);
    assert_eq!(get(&m, "PID-5"), None);
    assert_eq!(get(&m, "PID(1)-1"), s("Field1"));
    assert_eq!(get(&m, "PID(2)-1"), None);
    assert_eq!(get(&m, "ZZZ-1"), None);

    let pid = m.segment("PID").unwrap();
    assert_eq!(pid.id(), "PID");
    assert_eq!(pid.field_count(), 4);
    assert_eq!(
        pid.raw(),
        "PID|Field1|Component1^Component2|Component1^Sub-Component1&Sub-Component2^Component3|Repeat1~Repeat2"
    );
    assert_eq!(pid.get("3.2.2").as_deref(), Some("Sub-Component2"));
    assert_eq!(pid.get("4(2)").as_deref(), Some("Repeat2"));
    let f3 = pid.field(3);
    assert_eq!(
        f3.rep(1).components().map(|c| c.raw()).collect::<Vec<_>>(),
        ["Component1", "Sub-Component1&Sub-Component2", "Component3"]
    );
    assert_eq!(f3.component(2).raw(), "Sub-Component1&Sub-Component2");
    assert_eq!(f3.component(2).value(), "Sub-Component1");
    assert_eq!(f3.component(2).sub(2).as_deref(), Some("Sub-Component2"));
    assert_eq!(f3.component(2).sub(3), None);
    assert_eq!(f3.component(2).sub(0), None);
    assert_eq!(f3.component(9).raw(), "");
    assert!(f3.component(9).is_empty());
    assert_eq!(f3.value(), "Component1");
    // The iterators do not borrow the temporary Field / Rep.
    let reps = pid.field(4).repetitions();
    let reps: Vec<&str> = reps.map(|r| r.raw()).collect();
    assert_eq!(reps, ["Repeat1", "Repeat2"]);
    assert_eq!(pid.field(4).rep(2).value(), "Repeat2");
    assert!(pid.field(4).rep(3).is_empty());
    assert!(pid.field(4).rep(0).is_empty());
    assert_eq!(
        pid.field(5).repetitions().count(),
        1,
        "an absent field has one empty repetition"
    );
    assert!(pid.field(0).is_empty());
    assert!(pid.field(99).is_empty());
    // MSH-1 / MSH-2 are not split.
    let msh = m.msh();
    assert_eq!(msh.field(1).raw(), "|");
    assert_eq!(msh.field(2).repetitions().count(), 1);
    assert_eq!(msh.field(2).value(), "^~\\&");
    assert_eq!(msh.field(2).component(2).raw(), "");
    assert_eq!(msh.field(3).raw(), "GHH LAB");
    assert_eq!(msh.field_count(), 12);
    assert_eq!(m.segments_named("PID").count(), 1);
    assert_eq!(m.segments_named("OBX").count(), 0);
}

#[test]
fn segment_index_in_paths_and_explicit_nulls() {
    let text = read_text("oru_r01_ghh_glucose_v24.hl7");
    let m = one(&text);
    assert_eq!(get(&m, "OBX-2"), s("SN"));
    assert_eq!(get(&m, "OBX(1)-2"), s("SN"));
    assert_eq!(get(&m, "OBX(2)-2"), s("FN"));
    assert_eq!(get(&m, "OBX(3)-2"), None);
    assert_eq!(
        get(&m, "OBX(2)-5"),
        None,
        "first component of ^182 is empty"
    );
    assert_eq!(get(&m, "OBX(2)-5.2"), s("182"));
    assert_eq!(get(&m, "OBX(2)-3.2"), s("GLUCOSE"));
    assert_eq!(m.segments_named("OBX").count(), 2);

    let text = read_text("adt_a01_cerner_hnam_v23.hl7");
    let m = one(&text);
    assert_eq!(get(&m, "PID-3"), s("2148790"));
    assert_eq!(get(&m, "PID-3(2)"), s("162840"));
    assert_eq!(get(&m, "PID-3(2).4"), s("MSH_EMPI"));
    assert_eq!(get(&m, "PID-4(2).5"), s("DONOR "));
    assert_eq!(get(&m, "IN1(3)-4"), s("SELF-PAY"));
    let pv1 = m.segment("PV1").unwrap();
    assert!(pv1.field(9).is_null());
    assert!(!pv1.field(9).is_empty());
    assert_eq!(pv1.field(9).component(1).opt(), None);
    assert_eq!(pv1.field(10).component(1).opt().as_deref(), Some("NUR"));
    assert_eq!(get(&m, "PV1-9"), None, "the explicit null reads as absent");
    assert_eq!(get(&m, "IN1-5.2"), None);
    assert_eq!(get(&m, "IN1-5.3"), s("NEW YORK"));
}

#[test]
fn bad_paths_give_none() {
    let text = read_text("msh_pid_repetitions_subcomponents_v24.hl7");
    let m = one(&text);
    for p in [
        "",
        "PID",
        "PID-",
        "PID-0",
        "PID-x",
        "PID-3(0)",
        "PID-3()",
        "PID-3(2",
        "PID-3.",
        "PID-3..1",
        "PID-3.0",
        "PID-3.1.0",
        "PID-3.1.1.1",
        "PID-3x",
        "-3",
        "PID(0)-1",
        "PID()-1",
        "PID(1-1",
        "PID-99999999999999999999999",
        "PID-18446744073709551615",
        "PID-3(18446744073709551616)",
        "PÏD-1",
        "PID-１",
        "PID - 1",
        "pid-1",
        "PID-3(2)x",
    ] {
        assert_eq!(m.get(p), None, "{p:?}");
    }
    let pid = m.segment("PID").unwrap();
    for p in ["", "0", "x", "3.", "(1)", "3(1", "1 "] {
        assert_eq!(pid.get(p), None, "{p:?}");
    }
    assert_eq!(m.get("PID-18446744073709551615"), None);
}

// ---------------------------------------------------------------------------------
// Terminators, BOM, blank lines

fn shape<'a>(m: &Message<'a>) -> Vec<Vec<&'a str>> {
    m.segments()
        .iter()
        .map(|s| {
            (0..=s.field_count())
                .map(|n| if n == 0 { s.id() } else { s.field(n).raw() })
                .collect()
        })
        .collect()
}

#[test]
fn terminators_cr_lf_crlf_mixed_bom_are_equivalent() {
    let cr = read_text("oru_r01_ghh_glucose_v24.hl7");
    assert!(cr.contains('\r') && !cr.contains('\n'));
    let base = one(&cr);
    assert_eq!(base.segments().len(), 5);
    let lines: Vec<&str> = cr.split('\r').filter(|l| !l.is_empty()).collect();
    let variants = [
        lines.join("\n"),
        lines.join("\r\n") + "\r\n",
        format!("\u{feff}{}", lines.join("\r")),
        format!("\n\r\n{}\n\n\n", lines.join("\r\n\r\n")),
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{l}{}", ["\r", "\n", "\r\n"][i % 3]))
            .collect(),
        format!("  \t\r{}\r \r", lines.join("\r\n \n")),
    ];
    for v in &variants {
        let m = one(v);
        assert_eq!(shape(&m), shape(&base), "{v:?}");
        assert_eq!(get(&m, "PID-5.2"), s("EVE"));
        assert!(
            m.raw().starts_with("MSH|") && m.raw().ends_with("|||F"),
            "{:?}",
            m.raw()
        );
        let b = parse_batch(v).unwrap();
        assert_eq!(b.messages.len(), 1);
        assert_eq!(shape(&b.messages[0]), shape(&base));
    }
    // A BOM in bytes is stripped by decode_bytes too.
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(cr.as_bytes());
    assert_eq!(shape(&one(&decode_bytes(&bytes))), shape(&base));

    // The LF sample is an edited copy (different timestamps, one OBX less), so compare
    // what the two share.
    let lf = read_text("oru_r01_ghh_glucose_v24_lf.hl7");
    assert!(lf.contains('\n') && !lf.contains('\r'));
    let other = one(&lf);
    assert_eq!(
        other.segments().iter().map(|s| s.id()).collect::<Vec<_>>(),
        ["MSH", "PID", "OBR", "OBX"]
    );
    for p in [
        "MSH-9", "MSH-9.2", "MSH-10", "PID-3", "PID-5", "PID-5.2", "PID-11.3", "OBX-3.2",
        "OBX-5.2", "OBX-8",
    ] {
        assert_eq!(get(&other, p), get(&base, p), "{p}");
        assert!(get(&base, p).is_some(), "{p}");
    }
}

#[test]
fn bom_samples_parse_without_bom_in_first_segment() {
    let text = read_text("adt_a01_ghh_v251_bom.hl7");
    assert!(!text.starts_with('\u{feff}'), "decode_bytes strips the BOM");
    let with_bom = String::from_utf8(read("adt_a01_ghh_v251_bom.hl7")).unwrap();
    assert!(with_bom.starts_with('\u{feff}'));
    let m = one(&with_bom);
    assert_eq!(m.msh().id(), "MSH");
    assert!(m.raw().starts_with("MSH|"));
    assert_eq!(m.message_code(), "ADT");
    assert_eq!(m.version(), "2.5.1");
}

// ---------------------------------------------------------------------------------
// Batches

#[test]
fn batch_bhs_with_two_messages() {
    let text = read_text("batch_bhs_two_adt_a04_v25.hl7");
    let b = parse_batch(&text).unwrap();
    assert!(b.file_header.is_none());
    assert_eq!(b.batch_headers.len(), 1);
    assert_eq!(b.batch_headers[0].id(), "BHS");
    assert_eq!(b.batch_headers[0].field(2).raw(), "^~\\&");
    assert_eq!(b.batch_headers[0].get("4").as_deref(), Some("ABCHS"));
    assert_eq!(b.messages.len(), 2);
    assert_eq!(b.declared_message_count, Some(2));
    assert_eq!(b.messages[0].control_id(), "12334456778890");
    assert_eq!(b.messages[1].control_id(), "12334456778891");
    for m in &b.messages {
        assert_eq!(
            m.segments().iter().map(|s| s.id()).collect::<Vec<_>>(),
            ["MSH", "EVN", "PID", "PD1", "NK1", "PV1"]
        );
        assert_eq!((m.message_code(), m.trigger_event()), ("ADT", "A04"));
        assert!(m.raw().starts_with("MSH|") && m.raw().ends_with("^^^^^1"));
    }
}

#[test]
fn batch_fhs_file_with_two_batches() {
    let text = read_text("batch_fhs_two_bhs_v25.hl7");
    let b = parse_batch(&text).unwrap();
    let fhs = b.file_header.as_ref().expect("FHS");
    assert_eq!(fhs.id(), "FHS");
    assert_eq!(fhs.get("10").as_deref(), Some("abchs20070101123401.hl7"));
    assert_eq!(b.batch_headers.len(), 2);
    assert_eq!(
        b.batch_headers[1].get("11").as_deref(),
        Some("abchs20070101123401-2")
    );
    assert_eq!(b.messages.len(), 3);
    assert_eq!(b.declared_message_count, Some(3), "BTS-1 2 + 1");
    assert_eq!(
        b.messages
            .iter()
            .map(|m| m.control_id())
            .collect::<Vec<_>>(),
        ["12334456778890", "12334456778891", "12334456778890"]
    );
}

#[test]
fn batch_lenient_cases() {
    let text = read_text("batch_bhs_without_bts_v25.hl7");
    let b = parse_batch(&text).unwrap();
    assert_eq!(
        (
            b.batch_headers.len(),
            b.messages.len(),
            b.declared_message_count
        ),
        (1, 1, None)
    );
    let text = read_text("batch_msh_with_bts_without_bhs_v25.hl7");
    let b = parse_batch(&text).unwrap();
    assert_eq!(
        (
            b.batch_headers.len(),
            b.messages.len(),
            b.declared_message_count
        ),
        (0, 1, Some(1))
    );
    assert_eq!(b.messages[0].segments().len(), 6);
    // A single message.
    let text = read_text("adt_a04_ghh_v28.hl7");
    let b = parse_batch(&text).unwrap();
    assert_eq!(
        (
            b.file_header.is_none(),
            b.batch_headers.len(),
            b.messages.len()
        ),
        (true, 0, 1)
    );
    assert_eq!(b.messages[0].segments().len(), one(&text).segments().len());
    // Several messages without an envelope are split at each MSH.
    let two = format!("{text}\n{text}");
    assert_eq!(parse_batch(&two).unwrap().messages.len(), 2);
    // An empty batch.
    let b = parse_batch("BHS|^~\\&|A\rBTS|0").unwrap();
    assert_eq!(
        (
            b.batch_headers.len(),
            b.messages.len(),
            b.declared_message_count
        ),
        (1, 0, Some(0))
    );
    // Messages right under FHS: FTS-1 is the count.
    let b = parse_batch("FHS|^~\\&\rMSH|^~\\&|A||||||ADT^A01|1\rFTS|1").unwrap();
    assert_eq!((b.messages.len(), b.declared_message_count), (1, Some(1)));
}

#[test]
fn batch_errors() {
    let msh = "MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rPID|1";
    let err = |t: &str| parse_batch(t).unwrap_err();
    assert_eq!(err("").location, None);
    assert_eq!(err(" \r\n\n").location, None);
    assert_eq!(err("\u{feff}").location, None);
    assert_eq!(err("BTS|0").location, None, "nothing but a trailer");
    let e = err(&format!("FHS|^~\\&\r{msh}\rFHS|^~\\&\r{msh}"));
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("FHS"), Some(4))
    );
    assert_eq!(
        err(&format!("{msh}\rFHS|^~\\&")).location.as_deref(),
        Some("FHS")
    );
    let e = err(&format!("BHS|^~\\&\r{msh}\rBHS|^~\\&\r{msh}\rBTS|2"));
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("BHS"), Some(4))
    );
    // Two batches, each closed: fine.
    let two = format!("BHS|^~\\&\r{msh}\rBTS|1\rBHS|^~\\&\r{msh}\rBTS|1");
    let ok = parse_batch(&two).unwrap();
    assert_eq!(
        (
            ok.batch_headers.len(),
            ok.messages.len(),
            ok.declared_message_count
        ),
        (2, 2, Some(2))
    );
    assert_eq!(
        err(&format!("PID|1\r{msh}")).location.as_deref(),
        Some("PID")
    );
    assert_eq!(
        err(&format!("FHS|^~\\&\r{msh}\rFTS|1\r{msh}"))
            .location
            .as_deref(),
        Some("MSH")
    );
    assert_eq!(err("BHS|^~|A").location.as_deref(), Some("BHS-2"));
    assert_eq!(err("FHS").location.as_deref(), Some("FHS-1"));
    // Errors inside a message count segments from the start of the input.
    let e = err(&format!("BHS|^~\\&\r{msh}\rMSH|^^\\&|X"));
    assert_eq!(
        (e.location.as_deref(), e.segment_index),
        (Some("MSH-2"), Some(4))
    );
    // A line that could be patient data is not quoted as a location.
    let e = err("Jane Doe was here\rMSH|^~\\&|A||||||ADT^A01|1");
    assert_eq!(e.location, None);
    assert!(!e.to_string().contains("Jane"));
}

// ---------------------------------------------------------------------------------
// Bytes

#[test]
fn decode_bytes_utf8_bom_and_cp1252() {
    assert!(matches!(
        decode_bytes(b"MSH|^~\\&"),
        Cow::Borrowed("MSH|^~\\&")
    ));
    assert!(matches!(
        decode_bytes(b"\xEF\xBB\xBFMSH"),
        Cow::Borrowed("MSH")
    ));
    assert_eq!(decode_bytes("é".as_bytes()), "é");
    assert_eq!(decode_bytes(b"\x80\x96\x9f\xe9\x81"), "€–Ÿé\u{81}");
    assert_eq!(decode_bytes(b"\xEF\xBB\xBF\x96"), "–");
    let all: Vec<u8> = (0..=255).collect();
    let text = decode_bytes(&all);
    assert_eq!(text.chars().count(), 256);
    assert_eq!(text.chars().nth(0x8A), Some('Š'));
    assert_eq!(text.chars().nth(0xFF), Some('ÿ'));

    let bytes = read("msh_only_cp1252_byte.hl7");
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the sample is meant to be invalid UTF-8"
    );
    let text = decode_bytes(&bytes);
    let m = one(&text);
    assert_eq!(get(&m, "MSH-4"), s("ELAB–3"));
    assert_eq!(get(&m, "MSH-3"), s("GHH LAB"));

    // One stray cp1252 byte does not turn the message's UTF-8 into mojibake.
    let mut mixed = "PID|1||X||Müller^Jörg||".as_bytes().to_vec();
    mixed.extend_from_slice(b"\xe9t\xe9");
    assert_eq!(decode_bytes(&mixed), "PID|1||X||Müller^Jörg||été");
}

#[test]
fn parse_error_display() {
    let e = ParseError {
        message: "bad".into(),
        location: Some("MSH-2".into()),
        segment_index: Some(1),
    };
    assert_eq!(e.to_string(), "bad (at MSH-2, segment 1)");
    let e = ParseError {
        message: "empty".into(),
        location: None,
        segment_index: None,
    };
    assert_eq!(e.to_string(), "empty");
    assert_eq!(Delimiters::default().encoding_characters(), "^~\\&");
    let d = Delimiters {
        truncation: Some('#'),
        ..Delimiters::default()
    };
    assert_eq!(d.encoding_characters(), "^~\\&#");
}

// ---------------------------------------------------------------------------------
// Robustness: nothing panics

/// Parse `text` both ways; with `deep`, touch every accessor of everything parsed.
fn exercise(text: &str, deep: bool) {
    let mut walked = false;
    if let Ok(m) = Message::parse(text) {
        let _ = (m.get("PID-3(2).4.2"), m.get("MSH-9.2"));
        if deep {
            walk(&m);
            walked = true;
        }
    }
    if let Ok(b) = parse_batch(text) {
        // parse_batch parses each message with Message::parse: one deep walk will do.
        if !deep || (walked && b.messages.len() == 1 && b.batch_headers.is_empty()) {
            return;
        }
        for m in &b.messages {
            walk(m);
        }
        for h in b.file_header.iter().chain(&b.batch_headers) {
            walk_segment(h);
        }
    }
}

fn walk(m: &Message<'_>) {
    let _ = (
        m.message_code(),
        m.trigger_event(),
        m.control_id(),
        m.version(),
        m.raw(),
    );
    for p in [
        "MSH-1",
        "MSH-2",
        "MSH-9.2",
        "PID-3(2).4.2",
        "OBX(2)-5",
        "PID-5.1.1",
        "ZZZ(9)-9(9).9.9",
    ] {
        let _ = m.get(p);
    }
    for seg in m.segments() {
        walk_segment(seg);
    }
}

fn walk_segment(seg: &Segment<'_>) {
    let d = *seg.delimiters();
    let _ = (seg.id(), seg.raw());
    for n in 0..=seg.field_count() + 1 {
        let f = seg.field(n);
        let _ = (f.raw(), f.is_empty(), f.is_null(), f.value(), f.decoded());
        if n < 4 {
            let _ = seg.get(["0", "1(2).2.2", "2.1", "3(1).1.1"][n]);
        }
        for r in f.repetitions().take(20) {
            let _ = (r.value(), r.is_empty());
            for c in r.components().take(20) {
                let _ = (c.value(), c.opt(), c.sub(1), c.sub(2), c.is_empty());
                for sraw in c.subs_raw().take(20) {
                    let un = unescape(sraw, &d);
                    // With a letter as escape character (`\F\` vs `F`) escaping
                    // is ambiguous by nature.
                    if sraw.contains(d.escape) && !d.escape.is_alphanumeric() && d.escape != '.' {
                        assert_eq!(unescape(&escape(&un, &d), &d), un);
                    }
                }
            }
        }
        let _ = (f.rep(2).component(3).sub(2), f.component(0).value());
    }
}

/// xorshift64*: deterministic, no crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzz_prefixes_and_mutations_never_panic() {
    let interesting: &[&[u8]] = &[
        b"|",
        b"^",
        b"~",
        b"\\",
        b"&",
        b"#",
        b"\r",
        b"\n",
        b"\r\n",
        b"MSH",
        b"BHS",
        b"FHS",
        b"BTS",
        b"FTS",
        b"\\X",
        b"\\.br\\",
        b"\\XC3\\",
        b"\xC3",
        b"\xE2\x82",
        b"\xF0\x9F\x98\x80",
        b"\xEF\xBB\xBF",
        b"\xFF",
        b"\x00",
        b"\"\"",
        "§".as_bytes(),
        "ß".as_bytes(),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (name, bytes) in corpus() {
        // Truncated prefixes: every one through the header, a sample further on.
        let step = (bytes.len() / 100).max(1);
        let mut cut = 0;
        while cut <= bytes.len() {
            exercise(&decode_bytes(&bytes[..cut]), cut % 32 == 0);
            cut += if cut < 160 { 1 } else { step };
        }
        // Random mutations.
        for _ in 0..40 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len() + 1);
                match rng.below(4) {
                    0 if at < b.len() => b[at] = rng.next() as u8,
                    1 => {
                        let ins = interesting[rng.below(interesting.len())];
                        b.splice(at..at, ins.iter().copied());
                    }
                    2 if at < b.len() => {
                        let end = (at + 1 + rng.below(8)).min(b.len());
                        b.drain(at..end);
                    }
                    _ if at < b.len() => b[at] = interesting[rng.below(interesting.len())][0],
                    _ => {}
                }
            }
            let text = decode_bytes(&b);
            exercise(&text, true);
            // And as UTF-8 with replacement characters, to keep multi-byte text.
            exercise(&String::from_utf8_lossy(&b), false);
        }
        let _ = name;
    }
}

#[test]
fn fuzz_headers_with_odd_delimiters_never_panic() {
    let pool = [
        '|', '^', '~', '\\', '&', '#', '$', '%', '§', 'ß', '€', '😀', '\u{301}', 'r', ' ', '\t',
        '\0', '\u{feff}', 'M',
    ];
    let mut rng = Rng(42);
    for _ in 0..3000 {
        let mut t = String::from("MSH");
        for _ in 0..rng.below(8) {
            t.push(pool[rng.below(pool.len())]);
        }
        t.push_str(["|A|B", "§C", "", "|||||||ADT^A01|X", "\rPID|1|a^b&c~d\\F\\"][rng.below(5)]);
        for _ in 0..rng.below(30) {
            t.push(pool[rng.below(pool.len())]);
            if rng.below(4) == 0 {
                t.push_str(["\r", "\n", "PID", "\\X", "\\"][rng.below(5)]);
            }
        }
        exercise(&t, true);
        // Arbitrary text through escaping.
        let d = Delimiters::default();
        assert_eq!(unescape(&escape(&t, &d), &d), t);
    }
}
