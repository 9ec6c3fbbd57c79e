//! The harness the connection tests share (quinn's `Pair`): a client and a server state
//! machine wired together in memory. No sockets, no sleeps; time is a value the test
//! advances. Each test file adds the helpers of its own subject in an `impl Pair` block.

#![allow(dead_code)] // each test crate uses its own part

use std::time::{Duration, Instant};

use bytes::Bytes;
use wirecall_protocol::{
    ClientConfig, ClientConnection, ClientEvent, ProtocolError, ServerConfig, ServerConnection,
    ServerEvent,
};

pub(crate) struct Pair {
    pub(crate) client: ClientConnection,
    pub(crate) server: ServerConnection,
    pub(crate) now: Instant,
    /// Every chunk the client sent, and the server sent, in order (see
    /// [`Pair::handshake`]).
    pub(crate) c2s: Vec<Bytes>,
    pub(crate) s2c: Vec<Bytes>,
    /// The first error each side reported, if any.
    pub(crate) client_err: Option<ProtocolError>,
    pub(crate) server_err: Option<ProtocolError>,
}

impl Pair {
    /// Two fresh machines; nothing moved yet (the client's HELLO is queued).
    pub(crate) fn new(client: ClientConfig, server: ServerConfig) -> Pair {
        let now = Instant::now();
        Pair {
            client: ClientConnection::new(client, now).unwrap(),
            server: ServerConnection::new(server, now).unwrap(),
            now,
            c2s: Vec::new(),
            s2c: Vec::new(),
            client_err: None,
            server_err: None,
        }
    }

    /// Runs the handshake and takes both `Connected` events (panics if either is missing);
    /// the chunk records start empty after it.
    pub(crate) fn handshake(&mut self) {
        self.drive();
        assert!(
            matches!(self.client.poll_event(), Some(ClientEvent::Connected(_))),
            "{:?} {:?}",
            self.client_err,
            self.server_err
        );
        assert!(matches!(
            self.server.poll_event(),
            Some(ServerEvent::Connected(_))
        ));
        self.c2s.clear();
        self.s2c.clear();
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub(crate) fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(b) = self.client.poll_transmit() {
                moved = true;
                self.c2s.push(b.clone());
                if let Err(e) = self.server.handle_input(&b, self.now) {
                    self.server_err.get_or_insert(e);
                }
            }
            while let Some(b) = self.server.poll_transmit() {
                moved = true;
                self.s2c.push(b.clone());
                if let Err(e) = self.client.handle_input(&b, self.now) {
                    self.client_err.get_or_insert(e);
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves time on by `d` and lets both sides' timers fire.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now += d;
        if let Err(e) = self.client.handle_timeout(self.now) {
            self.client_err.get_or_insert(e);
        }
        if let Err(e) = self.server.handle_timeout(self.now) {
            self.server_err.get_or_insert(e);
        }
    }

    pub(crate) fn client_events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    pub(crate) fn server_events(&mut self) -> Vec<ServerEvent> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    /// The next server event, which must be a dispatched call.
    pub(crate) fn server_call(&mut self) -> wirecall_protocol::Call {
        match self.server.poll_event() {
            Some(ServerEvent::Call(c)) => c,
            other => panic!("expected a call, got {other:?} ({:?})", self.server_err),
        }
    }
}
