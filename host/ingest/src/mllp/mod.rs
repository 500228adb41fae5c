//! HL7v2 over MLLP (and the framings interface engines use): accept connections,
//! cut frames, hand each message to the [`Flow`](crate::flow::Flow), and answer
//! in order with an HL7 ACK or an MLLP release 2 commit ACK/NAK.

pub mod ack;
pub use ehrgate_wire::frame;
mod listener;
pub mod tls;

pub use listener::{AckMode, MllpConfig, bind, start};
