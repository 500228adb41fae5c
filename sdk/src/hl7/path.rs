//! Paths: `PID-3`, `PID-3(2)`, `PID-3(2).1`, `PID-3.4.2`, `OBX(2)-5`.

/// A position inside a segment; every part 1-based, defaulting to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldPath {
    pub field: usize,
    pub rep: usize,
    pub component: usize,
    pub sub: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Path<'p> {
    pub segment: &'p str,
    pub segment_index: usize,
    pub field: FieldPath,
}

/// `SEG[(n)]-FIELD...`; `None` when malformed.
pub(crate) fn parse_path(p: &str) -> Option<Path<'_>> {
    let id_len = p.bytes().take_while(|b| b.is_ascii_alphanumeric()).count();
    if id_len == 0 {
        return None;
    }
    let segment = &p[..id_len];
    let mut rest = &p[id_len..];
    let mut segment_index = 1;
    if let Some(r) = rest.strip_prefix('(') {
        let (n, r) = index_in_parens(r)?;
        segment_index = n;
        rest = r;
    }
    let field = parse_field_path(rest.strip_prefix('-')?)?;
    Some(Path {
        segment,
        segment_index,
        field,
    })
}

/// `FIELD[(rep)][.COMPONENT[.SUB]]`; `None` when malformed.
pub(crate) fn parse_field_path(p: &str) -> Option<FieldPath> {
    let (field, mut rest) = number(p)?;
    let mut rep = 1;
    if let Some(r) = rest.strip_prefix('(') {
        let (n, r) = index_in_parens(r)?;
        rep = n;
        rest = r;
    }
    let mut component = 1;
    let mut sub = 1;
    if let Some(r) = rest.strip_prefix('.') {
        let (n, r) = number(r)?;
        component = n;
        rest = r;
        if let Some(r) = rest.strip_prefix('.') {
            let (n, r) = number(r)?;
            sub = n;
            rest = r;
        }
    }
    if !rest.is_empty() {
        return None;
    }
    Some(FieldPath {
        field,
        rep,
        component,
        sub,
    })
}

/// A positive number at the start of `s`, and the rest.
fn number(s: &str) -> Option<(usize, &str)> {
    let len = s.bytes().take_while(|b| b.is_ascii_digit()).count();
    let n: usize = s[..len].parse().ok()?;
    if n == 0 {
        return None;
    }
    Some((n, &s[len..]))
}

/// `n)` after an opening parenthesis.
fn index_in_parens(s: &str) -> Option<(usize, &str)> {
    let (n, rest) = number(s)?;
    Some((n, rest.strip_prefix(')')?))
}
