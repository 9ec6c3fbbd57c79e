//! Addresses, listeners and streams for wirecall: tcp, unix sockets and in-memory pipes.
