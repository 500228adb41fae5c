//! `ehrgate audit verify`: is every audit row still the row that was written?

use ehrgate_lake::audit::{self, ChainedRow, GENESIS, Head, chain_hash};
use ehrgate_lake::{Lake, Micros, Table};

use crate::GovernError;

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    /// The seq of the first row that is not as written (missing, edited, or out of
    /// place).
    pub seq: i64,
    /// The row found at that place, when there is one.
    pub at: Option<Micros>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub why: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seq {}", self.seq)?;
        if let (Some(at), Some(actor), Some(action)) = (self.at, &self.actor, &self.action) {
            write!(f, " ({} {actor} {action})", ehrgate_lake::rfc3339(at))?;
        }
        write!(f, ": {}", self.why)
    }
}

/// What the walk found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Rows on the chain.
    pub chained: usize,
    /// Rows written before the chain existed (not verifiable).
    pub unchained: usize,
    /// The last row's seq and hash.
    pub head: Option<Head>,
    pub broken: Option<Break>,
}

impl Verdict {
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Walk the chain of `audit/access_log`.
pub async fn verify(lake: &Lake) -> Result<Verdict, GovernError> {
    let Some(table) = lake.table(Table::Audit.path()).await? else {
        return Ok(Verdict { chained: 0, unchained: 0, head: None, broken: None });
    };
    let (rows, recorded) = audit::read_chain(&table).await?;
    Ok(walk(&rows, recorded.as_ref()))
}

/// The verdict on `rows` (chained rows in seq order first), given the newest head a
/// commit recorded.
pub fn walk(rows: &[ChainedRow], recorded: Option<&Head>) -> Verdict {
    let unchained = rows.iter().filter(|r| r.seq.is_none()).count();
    let chained: Vec<&ChainedRow> = rows.iter().filter(|r| r.seq.is_some()).collect();
    let mut prev = Head::empty();
    let found = |r: &ChainedRow, seq: i64, why: String| Break {
        seq,
        at: Some(r.row.at),
        actor: Some(r.row.actor.clone()),
        action: Some(r.row.action.clone()),
        why,
    };
    let mut broken = None;
    let mut hash_at_recorded: Option<String> = None;
    for r in &chained {
        let seq = r.seq.expect("chained");
        let expected = prev.seq + 1;
        if seq < expected {
            broken = Some(found(r, seq, format!("seq {seq} appears more than once (a row was copied or inserted)")));
            break;
        }
        if seq > expected {
            let gap = if seq == expected + 1 { format!("seq {expected} is missing") } else { format!("seq {expected} to {} are missing", seq - 1) };
            broken = Some(Break { seq: expected, at: None, actor: None, action: None, why: format!("{gap}: deleted (the next row present is seq {seq})") });
            break;
        }
        if r.prev_hash.as_deref() != Some(prev.hash.as_str()) {
            let why = if seq == 0 && prev.hash == GENESIS {
                "the first row does not start the chain (rows before it were removed, or its prev_hash was edited)".to_string()
            } else {
                format!("its prev_hash is not the hash of seq {} (a row was replaced)", seq - 1)
            };
            broken = Some(found(r, seq, why));
            break;
        }
        let hash = chain_hash(seq, &r.row, &prev.hash);
        if r.hash.as_deref() != Some(hash.as_str()) {
            broken = Some(found(r, seq, "its content does not match its hash: the row was edited".into()));
            break;
        }
        if recorded.is_some_and(|h| h.seq == seq) {
            hash_at_recorded = Some(hash.clone());
        }
        prev = Head { seq, hash };
    }
    if broken.is_none()
        && let Some(rec) = recorded
    {
        if rec.seq > prev.seq {
            let first = prev.seq + 1;
            let which = if rec.seq == first { format!("seq {first} is missing") } else { format!("seq {first} to {} are missing", rec.seq) };
            broken = Some(Break { seq: first, at: None, actor: None, action: None, why: format!("{which}: rows at the end were deleted (the log records a head at seq {})", rec.seq) });
        } else if hash_at_recorded.as_deref() != Some(rec.hash.as_str()) {
            broken = Some(Break { seq: rec.seq, at: None, actor: None, action: None, why: "its hash is not the head the log recorded: the chain was rewritten".into() });
        }
    }
    let head = (!chained.is_empty()).then_some(prev);
    Verdict { chained: chained.len(), unchained, head, broken }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehrgate_lake::AuditRow;

    fn chain(n: usize) -> (Vec<ChainedRow>, Head) {
        let mut prev = Head::empty();
        let mut out = Vec::new();
        for i in 0..n {
            let row = AuditRow { at: 1_000 + i as i64, actor: format!("a{i}"), action: "sql.query".into(), outcome: "ok".into(), ..Default::default() };
            let seq = i as i64;
            let hash = chain_hash(seq, &row, &prev.hash);
            out.push(ChainedRow { seq: Some(seq), row, prev_hash: Some(prev.hash.clone()), hash: Some(hash.clone()) });
            prev = Head { seq, hash };
        }
        (out, prev)
    }

    #[test]
    fn an_intact_chain_and_each_kind_of_tampering() {
        let (rows, head) = chain(5);
        let v = walk(&rows, Some(&head));
        assert!(v.intact(), "{v:?}");
        assert_eq!((v.chained, v.head.as_ref().map(|h| h.seq)), (5, Some(4)));

        let mut edited = rows.clone();
        edited[2].row.outcome = "refused".into();
        assert_eq!(walk(&edited, Some(&head)).broken.unwrap().seq, 2);

        let mut deleted = rows.clone();
        deleted.remove(1);
        let b = walk(&deleted, Some(&head)).broken.unwrap();
        assert_eq!(b.seq, 1);
        assert!(b.why.contains("missing"), "{b}");

        // An edit that also recomputes the row's own hash breaks the next link.
        let mut resealed = rows.clone();
        resealed[3].row.actor = "someone else".into();
        resealed[3].hash = Some(chain_hash(3, &resealed[3].row, resealed[3].prev_hash.as_deref().unwrap()));
        assert_eq!(walk(&resealed, Some(&head)).broken.unwrap().seq, 4);

        let mut truncated = rows.clone();
        truncated.pop();
        let b = walk(&truncated, Some(&head)).broken.unwrap();
        assert_eq!(b.seq, 4, "{b}");

        let mut first_gone = rows.clone();
        first_gone.remove(0);
        assert_eq!(walk(&first_gone, Some(&head)).broken.unwrap().seq, 0);
    }
}
