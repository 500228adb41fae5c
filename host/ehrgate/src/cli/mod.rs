pub mod adapter_test;
pub mod run;
pub mod lake_cmds;
pub mod demo;
