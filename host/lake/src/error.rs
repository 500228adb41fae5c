//! Lake errors.

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake configuration: {0}")]
    Config(String),
    #[error("delta table {table}: {message}")]
    Delta { table: String, message: String },
    #[error("SQL: {0}")]
    Sql(String),
    #[error("the lake writer for {0} has stopped")]
    WriterGone(String),
    #[error("{0}")]
    Invalid(String),
    /// A read the reader's policy does not allow.
    #[error("refused: {0}")]
    Refused(String),
}

impl LakeError {
    pub(crate) fn delta(table: &str, e: impl std::fmt::Display) -> Self {
        LakeError::Delta { table: table.to_string(), message: e.to_string() }
    }
}
