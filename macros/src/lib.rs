//! Attribute macros for wirecall providers: `#[provider]`, `#[remote]`, `#[on_finalize]` and friends.
