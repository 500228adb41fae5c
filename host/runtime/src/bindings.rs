//! Host-side bindings generated from the contract.

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "ehrgate:adapter/adapter@0.1.0",
    imports: {
        "ehrgate:adapter/http.send": async,
        default: trappable,
    },
    exports: { default: async },
});

pub use ehrgate::adapter::http::{HttpError, Request as HttpRequest, Response as HttpResponse};
pub use ehrgate::adapter::types;
