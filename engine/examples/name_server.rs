//! Pyro's name server chapter, in wirecall: a name server, servers that register their
//! providers under logical names with metadata tags, and clients that find them by name
//! (`name:` / Pyro's `PYRONAME:`) and by metadata (`meta:` / Pyro's `PYROMETA:`) instead of
//! by address.
//!
//! Run with `cargo run -p wirecall --example name_server [store]`, where the store is
//! `mem` (the default), a store file (registrations survive restarts), or any URI
//! `wirecall::naming::backend_from_uri` takes. Outside an example, run the name server as
//! `wirecall ns serve --listen tcp://127.0.0.1:9090` and point clients at it with
//! `WIRECALL_NS=tcp://127.0.0.1:9090`.

use std::sync::Arc;

use wirecall::naming::{self, Announce, Filter, NamingBackend, RemoteNaming};
use wirecall::{Engine, Error, Proxy};

/// A greeter in one language.
pub(crate) struct Greeter {
    lang: &'static str,
}

#[wirecall::provider(service = "greeting")]
impl Greeter {
    /// Greets `name` in the greeter's language.
    #[remote]
    fn say_hello(&self, name: String) -> String {
        match self.lang {
            "fr" => format!("Bonjour, {name} !"),
            _ => format!("Hello, {name}!"),
        }
    }
}

/// What the example saw.
#[derive(Debug)]
pub(crate) struct Report {
    /// The answer through `name:example.greeting`.
    pub by_name: String,
    /// The answer through `meta:genre.greeting,lang.fr`.
    pub by_metadata: String,
    /// The names carrying the tag `genre.greeting`, as the name server lists them.
    pub greeters: Vec<String>,
    /// Every name the name server lists once the servers have stopped.
    pub left: Vec<String>,
}

/// Step 1 (Pyro: `python -m Pyro5.nameserver`): a name server, here hosted in process, over
/// `store`.
async fn start_name_server(store: &str) -> Result<Engine, Error> {
    let ns = Engine::server("tcp://127.0.0.1:0").start().await?;
    ns.host_name_server(naming::backend_from_uri(store)?)
        .await?;
    Ok(ns)
}

/// Step 2 (Pyro: `daemon.register(obj)` then `ns.register(name, uri, metadata=...)`): a server
/// that registers its provider under `name` when it starts and removes the name when it
/// finalizes.
async fn start_greeter(
    names: Arc<dyn NamingBackend>,
    name: &str,
    lang: &'static str,
) -> Result<Engine, Error> {
    let server = Engine::server("tcp://127.0.0.1:0")
        .announce(
            names,
            [Announce::new(name, 1)
                .service("greeting")
                .tags(["genre.greeting", &format!("lang.{lang}")])],
        )
        .start()
        .await?;
    server.register_provider(Greeter { lang }, 1)?;
    Ok(server)
}

/// Runs the three steps: register, look up by name, look up by metadata.
pub(crate) async fn run(store: &str) -> Result<Report, Error> {
    let ns = start_name_server(store).await?;
    // A client of the name server (what WIRECALL_NS=tcp://... gives every proxy).
    let names: Arc<dyn NamingBackend> = Arc::new(RemoteNaming::new(&ns.address())?);

    let english = start_greeter(names.clone(), "example.greeting", "en").await?;
    let french = start_greeter(names.clone(), "example.greeting.fr", "fr").await?;

    // Step 3 (Pyro: `Proxy("PYRONAME:example.greeting")`): look up by name. The proxy
    // resolves the name on its first call and caches the address.
    let greeting = Proxy::new("name:example.greeting")?.naming(names.clone());
    // Connecting resolves the name: the service and provider id bound in the registered
    // URI (`greeting:1@tcp://...`) then serve `Proxy::call`.
    greeting.connect().await?;
    let by_name: String = greeting.call("say_hello")?.arg("Ada").call().await?;

    // Step 4 (Pyro: `Proxy("PYROMETA:genre.greeting,lang.fr")` and `ns.yplookup`): look up
    // by metadata tags; the registration must carry every tag.
    let french_greeting = Proxy::new("meta:genre.greeting,lang.fr")?.naming(names.clone());
    let by_metadata: String = french_greeting
        .call_on(1, "greeting_say_hello")?
        .arg("Ada")
        .call()
        .await?;
    let greeters = names
        .list(&Filter::meta_all(["genre.greeting"]))
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();

    english.finalize().await;
    french.finalize().await;
    let left = names
        .list(&Filter::default())
        .await?
        .into_iter()
        .map(|r| r.name)
        .collect();
    ns.finalize().await;
    Ok(Report {
        by_name,
        by_metadata,
        greeters,
        left,
    })
}

#[allow(dead_code)] // the examples test calls run() instead
#[tokio::main]
async fn main() -> Result<(), Error> {
    let store = std::env::args().nth(1).unwrap_or_else(|| "mem".to_string());
    let report = run(&store).await?;
    println!("by name:     {}", report.by_name);
    println!("by metadata: {}", report.by_metadata);
    println!("greeters:    {}", report.greeters.join(", "));
    println!("after stop:  {}", report.left.join(", "));
    Ok(())
}
