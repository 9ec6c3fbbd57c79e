//! The client side: the connection driver ([`conn`]), the answer slots its callers wait on
//! ([`slot`]), proxies ([`proxy`]), and the client engine with its call builders
//! ([`builder`]).

use std::sync::Mutex;

mod batch;
mod builder;
pub(crate) mod callbacks;
pub(crate) mod conn;
mod proxy;
pub(crate) mod pyro;
mod slot;

pub use batch::{Batch, BatchCall, BatchResults};
pub use builder::{CallBuilder, Client, IntoProxy, RemoteFunction};
pub(crate) use conn::RawStream;
pub use proxy::{ProviderHandle, Proxy};
pub use pyro::{PyroBatch, PyroClasses, PyroItemStream, PyroMetadata, PyroProxy};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
