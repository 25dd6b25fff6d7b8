//! Host bindings of `sluice:plugin@0.1.0` and conversions to the SDK types.

#![allow(missing_docs)]

pub mod packager {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "packager",
        imports: { default: tracing | trappable },
    });
}

pub mod ingest {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "ingest-adapter",
        imports: { default: tracing | trappable },
        with: {
            "sluice:plugin/types": super::packager::sluice::plugin::types,
            "sluice:plugin/log": super::packager::sluice::plugin::log,
        },
    });
}
