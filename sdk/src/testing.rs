//! Run an adapter natively over fixture files, without a gateway.
