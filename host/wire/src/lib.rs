//! Wire formats that untrusted peers send, parsed without I/O, so each can be
//! fuzzed on its own (see `fuzz/`):
//!
//! - [`frame`]: MLLP block framing (and the custom start/end wrappers interface
//!   engines use), cut out of a TCP byte stream;
//! - [`ndjson`]: a streamed NDJSON body split into lines, and the checks a line
//!   passes before it reaches an adapter;
//! - [`signature`]: the HMAC signature and timestamp on a webhook request.

pub mod frame;
pub mod ndjson;
pub mod signature;
