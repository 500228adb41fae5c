pub mod adapter_test;
pub mod lake_cmds;
pub mod demo;
pub mod serve;
pub mod sandbox;
pub mod demo_mllp;
pub mod bulk;
pub mod demo_bulk;
