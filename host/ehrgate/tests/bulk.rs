//! placeholder while building
#[test]
fn placeholder() {}
