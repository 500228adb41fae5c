pub mod adapter_test;
pub mod run;
