//! Naming: the embedded store, the name server over real loopback sockets, naming URIs in
//! proxies, and servers that register their names on start and remove them at finalize.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use wirecall::naming::{
    Announce, EmbeddedStore, Filter, NamingBackend, Registration, RemoteNaming, NAME_SERVER_NAME,
};
use wirecall::{Engine, Error, Functions, Proxy};

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

fn tags(t: &[&str]) -> BTreeSet<String> {
    t.iter().map(|s| s.to_string()).collect()
}

fn names(regs: &[Registration]) -> Vec<&str> {
    regs.iter().map(|r| r.name.as_str()).collect()
}

/// The message of a naming error, checking its `unavailable` flag.
#[track_caller]
fn naming_message(e: Error, want_unavailable: bool) -> String {
    match e {
        Error::Naming {
            message,
            unavailable,
            ..
        } => {
            assert_eq!(unavailable, want_unavailable, "{message}");
            message
        }
        other => panic!("expected a naming error, got {other:?}"),
    }
}

/// A server whose provider 1 answers `greeting_hello(name)` with `"{who}: hello {name}"`.
async fn greeter(
    who: &'static str,
    announce: Option<(Arc<dyn NamingBackend>, Announce)>,
) -> Engine {
    // A short idle timeout, so tests can see proxies connect again.
    let mut b = Engine::server("tcp://127.0.0.1:0")
        .grace_period(Duration::from_millis(200))
        .idle_timeout(Some(Duration::from_millis(400)));
    if let Some((backend, a)) = announce {
        b = b.announce(backend, [a]);
    }
    let server = b.start().await.unwrap();
    server
        .register_functions(
            Functions::new("greeting").sync_fn("hello", &["name"], move |(n,): (String,)| {
                format!("{who}: hello {n}")
            }),
            1,
        )
        .unwrap();
    server
}

/// A name server on loopback with an in-memory store.
async fn name_server() -> (Engine, Arc<dyn NamingBackend>) {
    let ns = Engine::server("tcp://127.0.0.1:0")
        .grace_period(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    ns.host_name_server(Arc::new(EmbeddedStore::in_memory().unwrap()))
        .await
        .unwrap();
    let client: Arc<dyn NamingBackend> = Arc::new(RemoteNaming::new(&ns.address()).unwrap());
    (ns, client)
}

/// Every operation, against a backend (the store itself, or a name server in front of one).
async fn exercise(b: &dyn NamingBackend, base: usize) {
    b.ping().await.unwrap();
    assert_eq!(b.count().await.unwrap(), base);
    let calc = Registration::new("example.calc", "calc:1@tcp://127.0.0.1:4001")
        .with_metadata(["tag1", "tag2"]);
    b.register(calc.clone(), false).await.unwrap();
    b.register(
        Registration::new("example.echo", "tcp://127.0.0.1:4002").with_metadata(["tag2"]),
        false,
    )
    .await
    .unwrap();
    b.register(
        Registration::new("other.thing", "tcp://127.0.0.1:4003"),
        true,
    )
    .await
    .unwrap();
    assert_eq!(b.count().await.unwrap(), base + 3);
    assert_eq!(b.lookup("example.calc").await.unwrap(), vec![calc.clone()]);

    // Safe mode refuses to overwrite; plain mode overwrites.
    let m = naming_message(
        b.register(Registration::new("example.calc", "tcp://127.0.0.1:9"), true)
            .await
            .unwrap_err(),
        false,
    );
    assert!(m.contains("name already registered: example.calc"), "{m}");
    assert_eq!(b.lookup("example.calc").await.unwrap()[0].uri, calc.uri);
    b.register(calc.clone().with_metadata(["tag1", "tag2"]), false)
        .await
        .unwrap();

    let m = naming_message(b.lookup("nope").await.unwrap_err(), false);
    assert!(m.contains("unknown name: nope"), "{m}");

    // Filters, alone and combined; results sorted by name.
    let all = b.list(&Filter::default()).await.unwrap();
    assert_eq!(all.len(), base + 3);
    let ex = b.list(&Filter::prefix("example.")).await.unwrap();
    assert_eq!(names(&ex), ["example.calc", "example.echo"]);
    let re = b.list(&Filter::regex(r"ex.*\.e.ho")).await.unwrap();
    assert_eq!(names(&re), ["example.echo"]);
    // The regex matches the whole name, as Pyro's.
    assert!(b.list(&Filter::regex("example")).await.unwrap().is_empty());
    let both = b.list(&Filter::meta_all(["tag1", "tag2"])).await.unwrap();
    assert_eq!(names(&both), ["example.calc"]);
    let any = b.list(&Filter::meta_any(["tag2", "zzz"])).await.unwrap();
    assert_eq!(names(&any), ["example.calc", "example.echo"]);
    let mut f = Filter::prefix("example.");
    f.meta_any = tags(&["tag1"]);
    assert_eq!(names(&b.list(&f).await.unwrap()), ["example.calc"]);

    // Metadata.
    b.set_metadata("example.echo", tags(&["tag3"]))
        .await
        .unwrap();
    assert_eq!(
        b.lookup("example.echo").await.unwrap()[0].metadata,
        tags(&["tag3"])
    );
    let m = naming_message(
        b.set_metadata("nope", tags(&["x"])).await.unwrap_err(),
        false,
    );
    assert!(m.contains("unknown name: nope"), "{m}");

    // Invalid names, URIs, tags and regexes.
    for bad in ["", "has space", "tab\there", "nl\n", &"x".repeat(600)] {
        let e = b
            .register(Registration::new(bad, "tcp://127.0.0.1:1"), false)
            .await
            .unwrap_err();
        let m = naming_message(e, false);
        assert!(m.contains("invalid name"), "{bad:?}: {m}");
    }
    let m = naming_message(
        b.register(Registration::new("ok.name", "tcp://x y"), false)
            .await
            .unwrap_err(),
        false,
    );
    assert!(m.contains("invalid URI"), "{m}");
    let m = naming_message(
        b.register(
            Registration::new("ok.name", "tcp://127.0.0.1:1").with_metadata(["bad\u{0}tag"]),
            false,
        )
        .await
        .unwrap_err(),
        false,
    );
    assert!(m.contains("invalid metadata tag"), "{m}");
    let m = naming_message(b.list(&Filter::regex("ex(")).await.unwrap_err(), false);
    assert!(m.contains("invalid regex"), "{m}");
    let m = naming_message(
        b.remove(&Filter::regex("[z-a]"), None).await.unwrap_err(),
        false,
    );
    assert!(m.contains("invalid regex"), "{m}");
    assert_eq!(
        b.count().await.unwrap(),
        base + 3,
        "nothing invalid was stored"
    );

    // Remove: by URI (only that instance), exact name, prefix, regex.
    assert_eq!(
        b.remove(&Filter::exact("example.calc"), Some("tcp://elsewhere:1"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        b.remove(&Filter::exact("example.calc"), Some(&calc.uri))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.remove(&Filter::prefix("nothing."), None).await.unwrap(),
        0
    );
    assert_eq!(
        b.remove(&Filter::regex("other\\..*"), None).await.unwrap(),
        1
    );
    assert_eq!(
        b.remove(&Filter::prefix("example."), None).await.unwrap(),
        1
    );
    assert_eq!(b.count().await.unwrap(), base);
}

#[tokio::test]
async fn embedded_store_operations() {
    let store = EmbeddedStore::in_memory().unwrap();
    bounded(exercise(&store, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_operations_over_the_network() {
    let (ns, client) = name_server().await;
    // The name server's own entry, as Pyro5's.
    let own = bounded(client.lookup(NAME_SERVER_NAME)).await.unwrap();
    let port = ns.address().rsplit(':').next().unwrap().to_string();
    assert_eq!(own[0].uri, format!("PYRO:Pyro.NameServer@127.0.0.1:{port}"));
    assert_eq!(
        own[0].metadata,
        tags(&["class:Pyro5.nameserver.NameServer"])
    );
    bounded(exercise(&*client, 1)).await;
    // Removing everything leaves the name server's own entry.
    client
        .register(Registration::new("a.b", "tcp://127.0.0.1:1"), false)
        .await
        .unwrap();
    assert_eq!(client.remove(&Filter::default(), None).await.unwrap(), 1);
    assert_eq!(
        client.remove(&Filter::regex("Pyro.*"), None).await.unwrap(),
        0
    );
    assert_eq!(client.count().await.unwrap(), 1);
    ns.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_persist_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("names.redb");
    {
        let store = EmbeddedStore::open(&path).unwrap();
        store
            .register(
                Registration::new("kept.name", "tcp://127.0.0.1:4000").with_metadata(["t"]),
                false,
            )
            .await
            .unwrap();
        store
            .register(
                Registration::new("gone.name", "tcp://127.0.0.1:4001"),
                false,
            )
            .await
            .unwrap();
        store
            .remove(&Filter::exact("gone.name"), None)
            .await
            .unwrap();
        // One name server per file.
        let m = naming_message(EmbeddedStore::open(&path).unwrap_err(), false);
        assert!(m.contains("cannot open the name store"), "{m}");
    }
    // A name server on the same file after the restart answers the same names.
    let ns = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
    let backend = wirecall::naming::backend_from_uri(path.to_str().unwrap()).unwrap();
    ns.host_name_server(backend).await.unwrap();
    let client = RemoteNaming::new(&ns.address()).unwrap();
    let r = bounded(client.lookup("kept.name")).await.unwrap();
    assert_eq!(r[0].uri, "tcp://127.0.0.1:4000");
    assert_eq!(r[0].metadata, tags(&["t"]));
    assert!(client.lookup("gone.name").await.is_err());
    ns.finalize().await;

    // Not a name store: a clear error.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a database at all, just some bytes").unwrap();
    let m = naming_message(EmbeddedStore::open(&junk).unwrap_err(), false);
    assert!(m.contains("cannot open the name store"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_resolve_name_and_meta_uris() {
    let (ns, names) = name_server().await;
    let server = greeter(
        "one",
        Some((
            names.clone(),
            Announce::new("example.greeting", 1)
                .service("greeting")
                .tags(["lang.en", "kind.greeter"]),
        )),
    )
    .await;
    let hello = |p: Proxy| async move {
        p.call_on(1, "greeting_hello")
            .unwrap()
            .arg("Ada")
            .call::<String>()
            .await
    };
    // name: with a backend given in code.
    let p = Proxy::new("name:example.greeting")
        .unwrap()
        .naming(names.clone());
    assert_eq!(bounded(hello(p.clone())).await.unwrap(), "one: hello Ada");
    assert_eq!(
        p.resolve().await.unwrap(),
        format!("greeting:1@{}", server.address())
    );
    // The service and provider id bound in the registered URI serve Proxy::call.
    assert_eq!(p.service(), Some("greeting"));
    let r: String = p.call("hello").unwrap().arg("Bob").call().await.unwrap();
    assert_eq!(r, "one: hello Bob");
    // Bound in the proxy's own URI.
    let p = Proxy::new("greeting:1@name:example.greeting")
        .unwrap()
        .naming(names.clone());
    let r: String = bounded(p.call("hello").unwrap().arg("Cy").call())
        .await
        .unwrap();
    assert_eq!(r, "one: hello Cy");
    // PYRONAME: with the name server's location in the URI.
    let port = ns.address().rsplit(':').next().unwrap().to_string();
    let p = Proxy::new(&format!("PYRONAME:example.greeting@127.0.0.1:{port}")).unwrap();
    assert_eq!(bounded(hello(p)).await.unwrap(), "one: hello Ada");
    // meta: and PYROMETA: (every tag must be carried).
    let p = Proxy::new("meta:lang.en,kind.greeter")
        .unwrap()
        .naming(names.clone());
    assert_eq!(bounded(hello(p)).await.unwrap(), "one: hello Ada");
    let p = Proxy::new(&format!("PYROMETA:kind.greeter@127.0.0.1:{port}")).unwrap();
    assert_eq!(bounded(hello(p)).await.unwrap(), "one: hello Ada");
    let p = Proxy::new("meta:lang.en,lang.fr")
        .unwrap()
        .naming(names.clone());
    let m = naming_message(bounded(hello(p)).await.unwrap_err(), false);
    assert!(m.contains("no registration carries every tag"), "{m}");
    // Unknown names and bad naming URIs.
    let p = Proxy::new("name:no.such.name")
        .unwrap()
        .naming(names.clone());
    let m = naming_message(bounded(hello(p)).await.unwrap_err(), false);
    assert!(m.contains("unknown name: no.such.name"), "{m}");
    for bad in [
        "name:",
        "name:has space",
        "meta:",
        "PYRONAME:x@",
        "PYRONAME:x@h:notaport",
    ] {
        let e = Proxy::new(bad).unwrap_err();
        assert!(matches!(e, Error::Naming { .. }), "{bad}: {e:?}");
    }
    // A name whose server is gone: the transport error says which name led there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    names
        .register(
            Registration::new("dead.name", format!("tcp://127.0.0.1:{port}")),
            false,
        )
        .await
        .unwrap();
    let p = Proxy::new("name:dead.name").unwrap().naming(names.clone());
    match bounded(hello(p)).await.unwrap_err() {
        Error::Transport { message, .. } => assert!(
            message.contains("name:dead.name") && message.contains(&port.to_string()),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    // A name registered for a Pyro5 object (here the name server's own, served in the
    // Pyro5 dialect) turns the proxy to Pyro mode: provider ids are refused, and the
    // object's methods are called by their names.
    let p = Proxy::new(&format!("name:{NAME_SERVER_NAME}"))
        .unwrap()
        .naming(names.clone());
    let e = bounded(hello(p.clone())).await.unwrap_err();
    assert!(
        matches!(e, Error::Config { .. }) && e.to_string().contains("provider id"),
        "{e:?}"
    );
    assert!(p.is_pyro());
    let n: u64 = bounded(p.call("count").unwrap().call()).await.unwrap();
    assert!(n >= 1, "{n}");
    server.finalize().await;
    ns.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_gone_cached_proxies_keep_working() {
    let (ns, names) = name_server().await;
    let server = greeter(
        "one",
        Some((names.clone(), Announce::new("example.greeting", 1))),
    )
    .await;
    let port = ns.address().rsplit(':').next().unwrap().to_string();
    let uri = format!("PYRONAME:example.greeting@127.0.0.1:{port}");
    let cached = Proxy::new(&uri).unwrap();
    let call = |p: Proxy| async move {
        p.call_on(1, "greeting_hello")
            .unwrap()
            .arg("Ada")
            .call::<String>()
            .await
    };
    assert_eq!(
        bounded(call(cached.clone())).await.unwrap(),
        "one: hello Ada"
    );
    ns.finalize().await;
    // The resolved proxy keeps working, also over a new connection.
    assert_eq!(
        bounded(call(cached.clone())).await.unwrap(),
        "one: hello Ada"
    );
    // The server closes the idle connection; the next call connects again to the cached
    // address, without the name server.
    bounded(async {
        while server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let again = bounded(async {
        loop {
            match call(cached.clone()).await {
                Ok(r) => break r,
                // The close may be seen by this call first.
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    assert_eq!(again, "one: hello Ada");
    assert_eq!(server.connection_count(), 1);
    // A new lookup says the name server cannot be reached.
    let m = naming_message(
        bounded(call(Proxy::new(&uri).unwrap())).await.unwrap_err(),
        true,
    );
    assert!(m.contains("cannot be reached"), "{m}");
    let m = naming_message(
        bounded(names.lookup("example.greeting")).await.unwrap_err(),
        true,
    );
    assert!(m.contains(&ns.address()), "{m}");
    server.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_resolve_again_when_the_target_moves() {
    let (ns, names) = name_server().await;
    let one = greeter(
        "one",
        Some((names.clone(), Announce::new("example.greeting", 1))),
    )
    .await;
    let p = Proxy::new("name:example.greeting")
        .unwrap()
        .naming(names.clone());
    let call = |p: Proxy| async move {
        p.call_on(1, "greeting_hello")
            .unwrap()
            .arg("Ada")
            .call::<String>()
            .await
    };
    assert_eq!(bounded(call(p.clone())).await.unwrap(), "one: hello Ada");
    // The name moves to another server; the first stops.
    let two = greeter(
        "two",
        Some((names.clone(), Announce::new("example.greeting", 1))),
    )
    .await;
    // While the first still answers, the cached resolution is used.
    assert_eq!(bounded(call(p.clone())).await.unwrap(), "one: hello Ada");
    one.finalize().await;
    // Its name now points at the second server, so finalize left it.
    assert_eq!(
        names.lookup("example.greeting").await.unwrap()[0].uri,
        format!(":1@{}", two.address())
    );
    // The cached address fails to connect: the proxy resolves again.
    let r = bounded(async {
        loop {
            match call(p.clone()).await {
                Ok(r) => break r,
                // A call that raced the first server's shutdown.
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    assert_eq!(r, "two: hello Ada");
    assert_eq!(p.resolve().await.unwrap(), format!(":1@{}", two.address()));
    two.finalize().await;
    ns.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_register_on_start_and_deregister_on_finalize() {
    let store = Arc::new(EmbeddedStore::in_memory().unwrap());
    let names: Arc<dyn NamingBackend> = store.clone();
    let server = Engine::server("tcp://127.0.0.1:0")
        .announce(
            names.clone(),
            [
                Announce::new("svc.a", 1).service("greeting").tags(["x"]),
                Announce::new("svc.b", 2),
            ],
        )
        .start()
        .await
        .unwrap();
    let a = names.lookup("svc.a").await.unwrap();
    assert_eq!(a[0].uri, format!("greeting:1@{}", server.address()));
    assert_eq!(a[0].metadata, tags(&["x"]));
    assert_eq!(
        names.lookup("svc.b").await.unwrap()[0].uri,
        format!(":2@{}", server.address())
    );
    // svc.b is taken over by someone else before the server stops: it is left alone.
    names
        .register(Registration::new("svc.b", "tcp://127.0.0.1:1"), false)
        .await
        .unwrap();
    bounded(server.finalize()).await;
    assert!(names.lookup("svc.a").await.is_err());
    assert_eq!(
        names.lookup("svc.b").await.unwrap()[0].uri,
        "tcp://127.0.0.1:1"
    );
    // A name the backend refuses fails start.
    let e = Engine::server("tcp://127.0.0.1:0")
        .announce(names.clone(), [Announce::new("bad name", 1)])
        .start()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Naming { .. }), "{e:?}");
}

/// The process-wide default backend (what `WIRECALL_NS` sets; the CLI tests run
/// processes with the variable itself, so this binary never changes its environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backend_set_in_code() {
    let (ns, names) = name_server().await;
    let server = greeter(
        "default",
        Some((names.clone(), Announce::new("default.greeting", 1))),
    )
    .await;
    wirecall::naming::set_default_backend(names.clone());
    let p = Proxy::new("name:default.greeting").unwrap();
    let r: String = bounded(p.call_on(1, "greeting_hello").unwrap().arg("Ada").call())
        .await
        .unwrap();
    assert_eq!(r, "default: hello Ada");
    server.finalize().await;
    ns.finalize().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns.sock");
    let ns = Engine::server(format!("unix://{}", path.display()))
        .start()
        .await
        .unwrap();
    ns.host_name_server(Arc::new(EmbeddedStore::in_memory().unwrap()))
        .await
        .unwrap();
    let names: Arc<dyn NamingBackend> = Arc::new(RemoteNaming::new(&ns.address()).unwrap());
    // Its own entry is a Pyro unix socket URI.
    let own = bounded(names.lookup(NAME_SERVER_NAME)).await.unwrap();
    assert_eq!(
        own[0].uri,
        format!("PYRO:Pyro.NameServer@./u:{}", path.display())
    );
    let server = greeter(
        "unix",
        Some((names.clone(), Announce::new("example.greeting", 1))),
    )
    .await;
    // The same provider as a Pyro5 object (its default object id is the service name).
    let port = server.address().rsplit(':').next().unwrap().to_string();
    names
        .register(
            Registration::new("example.pyro", format!("PYRO:greeting@127.0.0.1:{port}")),
            false,
        )
        .await
        .unwrap();
    let at = format!("@./u:{}", path.display());
    let p = Proxy::new(&format!("PYRONAME:example.greeting{at}")).unwrap();
    let r: String = bounded(p.call_on(1, "greeting_hello").unwrap().arg("Ada").call())
        .await
        .unwrap();
    assert_eq!(r, "unix: hello Ada");
    let p = bounded(wirecall::PyroProxy::resolve(&format!(
        "PYRONAME:example.pyro{at}"
    )))
    .await
    .unwrap();
    let r: String = bounded(p.call_typed("hello", ("Bo",))).await.unwrap();
    assert_eq!(r, "unix: hello Bo");
    for bad in ["PYRONAME:x@./u:", "PYRONAME:x@./u:/a:b"] {
        let e = Proxy::new(bad).unwrap_err();
        assert!(matches!(e, Error::Naming { .. }), "{bad}: {e:?}");
    }
    server.finalize().await;
    ns.finalize().await;
}

/// A backend that pushes changes (as etcd does): the embedded store, plus a watch fed by
/// its own writes.
struct Watched {
    store: EmbeddedStore,
    subscribers: std::sync::Mutex<Vec<(String, UnboundedSender<Vec<Registration>>)>>,
}

type UnboundedSender<T> = futures::channel::mpsc::UnboundedSender<T>;

impl Watched {
    fn new() -> Watched {
        Watched {
            store: EmbeddedStore::in_memory().unwrap(),
            subscribers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Pushes `name`'s registrations to its watchers.
    async fn changed(&self, name: &str) {
        let regs = self.store.lookup(name).await.unwrap_or_default();
        for (n, tx) in self.subscribers.lock().unwrap().iter() {
            if n == name {
                let _ = tx.unbounded_send(regs.clone());
            }
        }
    }

    /// Watches whose receiving end is still alive.
    fn open_watches(&self) -> usize {
        let mut s = self.subscribers.lock().unwrap();
        s.retain(|(_, tx)| !tx.is_closed());
        s.len()
    }
}

impl NamingBackend for Watched {
    fn register(
        &self,
        reg: Registration,
        safe: bool,
    ) -> futures::future::BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let name = reg.name.clone();
            self.store.register(reg, safe).await?;
            self.changed(&name).await;
            Ok(())
        })
    }

    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<Registration>, Error>> {
        self.store.lookup(name)
    }

    fn list<'a>(
        &'a self,
        filter: &'a Filter,
    ) -> futures::future::BoxFuture<'a, Result<Vec<Registration>, Error>> {
        self.store.list(filter)
    }

    fn remove<'a>(
        &'a self,
        filter: &'a Filter,
        uri: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<usize, Error>> {
        Box::pin(async move {
            let names: Vec<String> = self
                .subscribers
                .lock()
                .unwrap()
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            let n = self.store.remove(filter, uri).await?;
            for name in names {
                self.changed(&name).await;
            }
            Ok(n)
        })
    }

    fn set_metadata<'a>(
        &'a self,
        name: &'a str,
        metadata: BTreeSet<String>,
    ) -> futures::future::BoxFuture<'a, Result<(), Error>> {
        self.store.set_metadata(name, metadata)
    }

    fn count(&self) -> futures::future::BoxFuture<'_, Result<usize, Error>> {
        self.store.count()
    }

    fn ping(&self) -> futures::future::BoxFuture<'_, Result<(), Error>> {
        self.store.ping()
    }

    fn watch(&self, name: &str) -> Option<futures::stream::BoxStream<'static, Vec<Registration>>> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.subscribers
            .lock()
            .unwrap()
            .push((name.to_string(), tx));
        Some(Box::pin(rx))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_watch_keeps_the_cached_resolution_fresh() {
    let watched = Arc::new(Watched::new());
    let names: Arc<dyn NamingBackend> = watched.clone();
    let one = greeter(
        "one",
        Some((names.clone(), Announce::new("example.greeting", 1))),
    )
    .await;
    let p = Proxy::new("name:example.greeting")
        .unwrap()
        .naming(names.clone());
    let r: String = bounded(p.call_on(1, "greeting_hello").unwrap().arg("Ada").call())
        .await
        .unwrap();
    assert_eq!(r, "one: hello Ada");
    assert_eq!(watched.open_watches(), 1, "the proxy watches its name");
    // The name moves while the first server still runs: the push updates the cache, so
    // the next connection goes to the second server without a failed connect first.
    let two = greeter(
        "two",
        Some((names.clone(), Announce::new("example.greeting", 1))),
    )
    .await;
    let want = format!(":1@{}", two.address());
    bounded(async {
        while p.resolve().await.unwrap() != want {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Dropping the proxy ends its watch.
    drop(p);
    bounded(async {
        while watched.open_watches() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    one.finalize().await;
    two.finalize().await;
}
