//! wirecall's native wire protocol: frame format, handshake, limits and the connection
//! state machine. Sans-IO: bytes in, frames and events out; no sockets, no clocks read.
#![forbid(unsafe_code)]
