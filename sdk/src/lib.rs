//! # ehrgate-sdk
//!
//! Everything an ehrgate adapter author depends on:
//!
//! - [`Adapter`]: the trait an adapter implements, and [`export_adapter!`] to turn it
//!   into a WebAssembly component for the `ehrgate:adapter@0.1.0` contract;
//! - [`hl7`]: an HL7v2 parser (delimiters from MSH, escapes, batches, paths);
//! - [`fhir`]: FHIR R4 builders; [`ids`]: deterministic resource ids;
//! - [`v2fhir`]: the standard HL7v2-to-FHIR mapping, overridable piece by piece;
//! - [`host`]: the gateway's services (EHR requests, state, config, logs);
//! - [`testing`]: run an adapter over fixture files natively, with golden files.
//!
//! ```ignore
//! use ehrgate_sdk::{Adapter, AdapterInfo};
//! struct MyAdapter;
//! impl Adapter for MyAdapter {
//!     fn describe() -> AdapterInfo {
//!         AdapterInfo { name: "mine".into(), vendor: "Acme".into(), version: "0.1.0".into(), ..Default::default() }
//!     }
//! }
//! ehrgate_sdk::export_adapter!(MyAdapter);
//! ```

pub mod actions;
pub mod adapter;
pub mod envelope;
pub mod fhir;
#[cfg(not(target_arch = "wasm32"))]
pub mod golden;
pub mod hl7;
pub mod host;
pub mod ids;
pub mod site;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod v2fhir;

#[doc(hidden)]
pub mod glue;
// (single-threaded only: compiled for the guests, and natively for its own tests)
#[cfg(any(test, all(target_family = "wasm", not(target_feature = "atomics"))))]
pub mod guest_alloc;

/// Adapters built for wasm32 allocate through [`guest_alloc::SizeClasses`] (turn off
/// the `guest-allocator` feature to install another allocator).
#[cfg(all(target_family = "wasm", not(target_feature = "atomics"), feature = "guest-allocator"))]
#[global_allocator]
static GUEST_ALLOCATOR: guest_alloc::SizeClasses = guest_alloc::SizeClasses::new();

pub use adapter::{Adapter, AdapterError, AdapterInfo, ConnectionNeed, Hl7Input, Output};

/// The contract version this SDK builds adapters against.
pub const CONTRACT_VERSION: &str = "0.1.0";

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v0.1.0",
        world: "ehrgate:adapter/adapter@0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_guest",
        default_bindings_module: "ehrgate_sdk::bindings",
    });
}

/// Export a type implementing [`Adapter`] as the component's `guest` interface.
/// Use it once, at the crate root of a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! export_adapter {
    ($ty:ty) => {
        // Only a wasm build exports the component interface; a native build of the
        // same crate (tests, the golden harness, benchmarks) just has the type.
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub struct __EhrgateGuest;
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            impl $crate::bindings::exports::ehrgate::adapter::guest::Guest for __EhrgateGuest {
                fn describe() -> $crate::bindings::ehrgate::adapter::types::AdapterInfo {
                    $crate::glue::describe::<$ty>()
                }
                fn map_hl7(
                    msg: $crate::bindings::ehrgate::adapter::types::Hl7Message,
                ) -> ::core::result::Result<
                    $crate::bindings::ehrgate::adapter::types::Output,
                    $crate::bindings::ehrgate::adapter::types::AdapterError,
                > {
                    $crate::glue::map_hl7::<$ty>(msg)
                }
                fn map_hl7_batch(
                    msgs: ::std::vec::Vec<$crate::bindings::ehrgate::adapter::types::Hl7Message>,
                ) -> ::std::vec::Vec<
                    ::core::result::Result<
                        $crate::bindings::ehrgate::adapter::types::Output,
                        $crate::bindings::ehrgate::adapter::types::AdapterError,
                    >,
                > {
                    $crate::glue::map_hl7_batch::<$ty>(msgs)
                }
                fn map_fhir(
                    batch: ::std::vec::Vec<::std::string::String>,
                ) -> ::core::result::Result<
                    $crate::bindings::ehrgate::adapter::types::Output,
                    $crate::bindings::ehrgate::adapter::types::AdapterError,
                > {
                    $crate::glue::map_fhir::<$ty>(batch)
                }
                fn handle_event(
                    source: ::std::string::String,
                    body: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<
                    $crate::bindings::ehrgate::adapter::types::Output,
                    $crate::bindings::ehrgate::adapter::types::AdapterError,
                > {
                    $crate::glue::handle_event::<$ty>(source, body)
                }
                fn run_action(
                    name: ::std::string::String,
                    input: ::std::string::String,
                ) -> ::core::result::Result<
                    ::std::string::String,
                    $crate::bindings::ehrgate::adapter::types::AdapterError,
                > {
                    $crate::glue::run_action::<$ty>(name, input)
                }
            }
        };
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_guest!(__EhrgateGuest with_types_in $crate::bindings);
    };
}
