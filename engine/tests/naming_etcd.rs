//! The etcd naming backend against real etcd processes (single node and a 3-node cluster)
//! started on free loopback ports in temp dirs, and real wirecall servers in child processes.
//!
//! Needs the `etcd` binary (Debian: etcd-server; `scripts/system-deps.sh` installs it). When it
//! is missing the tests skip, unless `WIRECALL_REQUIRE_ETCD=1` (set by the test command): then
//! they fail.
#![cfg(feature = "etcd")]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use wirecall::naming::etcd::{EtcdBackend, EtcdOptions, Pick};
use wirecall::naming::{Filter, NamingBackend, Registration, RemoteNaming};
use wirecall::{Engine, Error, Functions, Proxy};

/// `python_or_skip`: the Pyro5 interop tests' Python (`WIRECALL_PYTHON`).
mod pyro_common;

/// Pyro's name server chapter (engine/examples/name_server.rs), here over etcd.
#[path = "../examples/name_server.rs"]
mod name_server_example;

/// Lease TTL of the tests' registrations.
const TTL: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// the etcd harness

/// Running etcd members, killed (and their data dirs removed) on drop.
struct Etcd {
    members: Vec<Option<Child>>,
    client_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn etcd_available() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("WIRECALL_REQUIRE_ETCD").as_deref() == Ok("1") {
            panic!(
                "WIRECALL_REQUIRE_ETCD=1 but the `etcd` binary is not on PATH: run \
                 scripts/system-deps.sh (installs Debian's etcd-server) or install etcd"
            );
        }
        eprintln!("skipped: the `etcd` binary is not on PATH (set WIRECALL_REQUIRE_ETCD=1 to fail instead)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    /// Starts `n` members forming one cluster and waits (bounded) until each answers.
    async fn start(n: usize) -> Option<Etcd> {
        if !etcd_available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let client_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let cluster = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peer_ports[i]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("wirecall-test-{}-{}", std::process::id(), client_ports[0]);
        let mut members = Vec::new();
        for i in 0..n {
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log"))).unwrap();
            let client = format!("http://127.0.0.1:{}", client_ports[i]);
            let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}.data")))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                // quick elections: a cluster that loses its leader recovers within a second
                .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting etcd");
            members.push(Some(child));
        }
        let etcd = Etcd {
            members,
            client_ports,
            _dir: dir,
        };
        for i in 0..n {
            etcd.wait_healthy(i).await;
        }
        Some(etcd)
    }

    fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.client_ports[i])
    }

    fn endpoints(&self) -> Vec<String> {
        (0..self.client_ports.len())
            .map(|i| self.endpoint(i))
            .collect()
    }

    fn uri(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    async fn wait_healthy(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = EtcdBackend::connect(&[self.endpoint(i)], quick_options()).await;
            match attempt {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(self._dir.path().join(format!("m{i}.log")))
                        .unwrap_or_default();
                    panic!("etcd member {i} not healthy within 30 s: {e}\nits log:\n{log}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The index of the current leader (asked of each member).
    async fn leader(&self) -> usize {
        for i in 0..self.members.len() {
            let url = format!("http://{}", self.endpoint(i));
            let mut client = etcd_client::Client::connect([url], None).await.unwrap();
            let status = client.status().await.unwrap();
            if status.leader() == status.header().unwrap().member_id() {
                return i;
            }
        }
        panic!("no member says it is the leader");
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn quick_options() -> EtcdOptions {
    EtcdOptions {
        ttl: TTL,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    }
}

fn options_with_prefix(prefix: &str) -> EtcdOptions {
    EtcdOptions {
        prefix: prefix.to_string(),
        ..quick_options()
    }
}

fn reg(name: &str, uri: &str, tags: &[&str]) -> Registration {
    Registration {
        name: name.to_string(),
        uri: uri.to_string(),
        metadata: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn tags(t: &[&str]) -> BTreeSet<String> {
    t.iter().map(|t| t.to_string()).collect()
}

fn names(regs: &[Registration]) -> Vec<&str> {
    regs.iter().map(|r| r.name.as_str()).collect()
}

fn is_not_registered(e: &Error) -> bool {
    matches!(e, Error::Naming { unavailable: false, message, .. } if message.contains("unknown name"))
}

/// Polls `f` every 25 ms until it returns true; the time it took, or `None` after `bound`.
async fn time_until<F, Fut>(bound: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < bound {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------
// a child process: a wirecall server that registers itself in etcd, killed by the tests

/// Runs as a child process of the tests (see `spawn_registered_server`): starts a wirecall
/// server whose `who_echo(x)` answers `(its pid, x)`, registers it under the given name and
/// prints `READY <uri>`, then waits to be killed (at most 120 s).
#[test]
#[ignore = "a child process of the etcd tests, not a test"]
fn child_registered_server() {
    let Ok(spec) = std::env::var("WIRECALL_ETCD_CHILD") else {
        return;
    };
    let (endpoint, name) = spec.split_once('|').unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let pid = std::process::id();
        engine
            .register_functions(
                Functions::new("who").sync_fn("echo", &["x"], move |(x,): (u64,)| (pid, x)),
                7,
            )
            .unwrap();
        let ns = EtcdBackend::connect(&[endpoint.to_string()], quick_options())
            .await
            .unwrap();
        let uri = engine.address();
        ns.register(reg(name, &uri, &["role.test"]), false)
            .await
            .unwrap();
        println!("READY {uri}");
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
}

/// A child process running `child_registered_server`, killed on drop.
struct ServerChild {
    child: Option<Child>,
    pid: u32,
    uri: String,
}

impl ServerChild {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn spawn_registered_server(endpoint: &str, name: &str) -> ServerChild {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_registered_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WIRECALL_ETCD_CHILD", format!("{endpoint}|{name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut server = ServerChild {
        pid: child.id(),
        child: Some(child),
        uri: String::new(),
    };
    let uri = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.ok()?;
                // libtest may print "test child_registered_server ... " before it
                if let Some(at) = line.find("READY ") {
                    return Some(line[at + 6..].trim().to_string());
                }
            }
            None
        }),
    )
    .await
    .expect("the child server did not start within 30 s")
    .unwrap()
    .expect("the child server exited before registering");
    server.uri = uri;
    server
}

async fn who(proxy: &Proxy, x: u64) -> Result<(u32, u64), Error> {
    Engine::client()
        .register("who_echo")
        .on(proxy, 7)
        .arg(x)
        .call()
        .await
}

/// The next list of a watch (bounded), as sorted URIs.
async fn next(w: &mut futures::stream::BoxStream<'static, Vec<Registration>>) -> Vec<String> {
    let list = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("no watch event within 5 s")
        .expect("the watch ended");
    let mut uris: Vec<String> = list.into_iter().map(|r| r.uri).collect();
    uris.sort();
    uris
}

// ---------------------------------------------------------------------------------------
// the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_one_node() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let ns = EtcdBackend::from_uri(&etcd.uri()).await.unwrap();
        ns.ping().await.unwrap();
        assert_eq!(ns.count().await.unwrap(), 0);
        ns.register(
            reg(
                "music.rock",
                "tcp://127.0.0.1:9001/a#1",
                &["genre.rock", "loud"],
            ),
            false,
        )
        .await
        .unwrap();
        ns.register(
            reg("music.jazz", "tcp://127.0.0.1:9002/a#1", &["genre.jazz"]),
            false,
        )
        .await
        .unwrap();
        ns.register(
            reg("video/clips", "tcp://127.0.0.1:9003/a#1", &["loud"]),
            true,
        )
        .await
        .unwrap();
        assert_eq!(ns.count().await.unwrap(), 3);

        let rock = ns.lookup("music.rock").await.unwrap();
        assert_eq!(
            rock,
            vec![reg(
                "music.rock",
                "tcp://127.0.0.1:9001/a#1",
                &["genre.rock", "loud"]
            )]
        );
        assert_eq!(
            ns.lookup("video/clips").await.unwrap()[0].uri,
            "tcp://127.0.0.1:9003/a#1"
        );
        let e = ns.lookup("music.pop").await.unwrap_err();
        assert!(is_not_registered(&e), "{e}");
        // a name that is a prefix of another is not that other
        let e = ns.lookup("music").await.unwrap_err();
        assert!(is_not_registered(&e), "{e}");
        let e = ns.lookup("has space").await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Naming {
                    unavailable: false,
                    ..
                }
            ),
            "{e}"
        );

        let all = ns.list(&Filter::default()).await.unwrap();
        assert_eq!(names(&all), ["music.jazz", "music.rock", "video/clips"]);
        let f = Filter {
            prefix: Some("music.".into()),
            ..Filter::default()
        };
        assert_eq!(
            names(&ns.list(&f).await.unwrap()),
            ["music.jazz", "music.rock"]
        );
        let f = Filter {
            prefix: Some("video/".into()),
            ..Filter::default()
        };
        assert_eq!(names(&ns.list(&f).await.unwrap()), ["video/clips"]);
        let f = Filter {
            regex: Some(r"music\.r.*".into()),
            ..Filter::default()
        };
        assert_eq!(names(&ns.list(&f).await.unwrap()), ["music.rock"]);
        // anchored at both ends
        let f = Filter {
            regex: Some("usic".into()),
            ..Filter::default()
        };
        assert!(ns.list(&f).await.unwrap().is_empty());
        let f = Filter {
            meta_all: tags(&["loud", "genre.rock"]),
            ..Filter::default()
        };
        assert_eq!(names(&ns.list(&f).await.unwrap()), ["music.rock"]);
        let f = Filter {
            meta_any: tags(&["genre.jazz", "loud"]),
            ..Filter::default()
        };
        assert_eq!(
            names(&ns.list(&f).await.unwrap()),
            ["music.jazz", "music.rock", "video/clips"]
        );
        let f = Filter {
            prefix: Some("music.".into()),
            meta_any: tags(&["loud"]),
            ..Filter::default()
        };
        assert_eq!(names(&ns.list(&f).await.unwrap()), ["music.rock"]);
        let f = Filter {
            regex: Some("music.(".into()),
            ..Filter::default()
        };
        let e = ns.list(&f).await.unwrap_err();
        match &e {
            Error::Naming {
                name,
                message,
                unavailable: false,
            } => {
                assert_eq!(name, "music.(");
                assert!(message.contains("invalid regex"), "{message}");
            }
            other => panic!("expected a naming error, got {other:?}"),
        }

        // safe mode refuses an existing name, even for the same URI
        let e = ns
            .register(reg("music.rock", "tcp://127.0.0.1:9009/a#1", &[]), true)
            .await
            .unwrap_err();
        assert!(format!("{e}").contains("already registered"), "{e}");
        assert!(format!("{e}").contains("tcp://127.0.0.1:9001/a#1"), "{e}");
        // re-registering the same URI refreshes it (new metadata, still one instance)
        ns.register(
            reg("music.rock", "tcp://127.0.0.1:9001/a#1", &["genre.rock"]),
            false,
        )
        .await
        .unwrap();
        assert_eq!(ns.count().await.unwrap(), 3);
        assert_eq!(
            ns.lookup("music.rock").await.unwrap()[0].metadata,
            tags(&["genre.rock"])
        );

        // set_metadata rewrites the keys and keeps their lease
        ns.set_metadata("music.jazz", tags(&["genre.jazz", "smooth"]))
            .await
            .unwrap();
        assert_eq!(
            ns.lookup("music.jazz").await.unwrap()[0].metadata,
            tags(&["genre.jazz", "smooth"])
        );
        let e = ns
            .set_metadata("music.pop", tags(&["x"]))
            .await
            .unwrap_err();
        assert!(is_not_registered(&e), "{e}");

        // another backend on the same prefix sees the names; one on another prefix does not
        let other = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        assert_eq!(other.count().await.unwrap(), 3);
        let elsewhere = EtcdBackend::connect(&etcd.endpoints(), options_with_prefix("elsewhere/"))
            .await
            .unwrap();
        assert_eq!(elsewhere.count().await.unwrap(), 0);

        // remove: one instance by URI, by regex, by name prefix
        let f = Filter {
            prefix: Some("music.rock".into()),
            ..Filter::default()
        };
        assert_eq!(
            ns.remove(&f, Some("tcp://127.0.0.1:1/none")).await.unwrap(),
            0
        );
        let f = Filter {
            regex: Some("video/.*".into()),
            ..Filter::default()
        };
        assert_eq!(other.remove(&f, None).await.unwrap(), 1);
        let f = Filter {
            prefix: Some("music.".into()),
            ..Filter::default()
        };
        assert_eq!(ns.remove(&f, None).await.unwrap(), 2);
        assert_eq!(ns.count().await.unwrap(), 0);

        // without a lease, a name outlives the backend that registered it
        let unleased = EtcdBackend::from_uri(&format!("{}?lease=none", etcd.uri()))
            .await
            .unwrap();
        unleased
            .register(reg("kept", "tcp://127.0.0.1:9005/a#1", &[]), false)
            .await
            .unwrap();
        drop(unleased);
        tokio::time::sleep(TTL + Duration::from_millis(1500)).await;
        assert_eq!(ns.lookup("kept").await.unwrap().len(), 1);
        let f = Filter {
            prefix: Some("kept".into()),
            ..Filter::default()
        };
        assert_eq!(ns.remove(&f, None).await.unwrap(), 1);

        // closing revokes the lease: the metadata rewrite kept the key on it
        ns.register(reg("short.lived", "tcp://127.0.0.1:9004/a#1", &[]), false)
            .await
            .unwrap();
        ns.set_metadata("short.lived", tags(&["x"])).await.unwrap();
        ns.close().await;
        assert_eq!(other.count().await.unwrap(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_when_the_registering_process_dies() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let ns = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        let mut server = spawn_registered_server(&etcd.endpoint(0), "leased.server").await;
        let found = ns.lookup("leased.server").await.unwrap();
        assert_eq!(found[0].uri, server.uri);
        // alive for longer than the TTL: its keepalive works
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(ns.lookup("leased.server").await.unwrap().len(), 1);
        server.kill();
        let gone = time_until(TTL * 3, || async {
            matches!(ns.lookup("leased.server").await, Err(e) if is_not_registered(&e))
        })
        .await
        .expect("the killed server's name was still registered after 3x the TTL");
        eprintln!(
            "figure: a killed server's name disappeared {gone:?} after the kill (TTL {TTL:?})"
        );
        // expiry: the TTL after the last keepalive (sent every TTL/3), checked by etcd every
        // 500 ms; 2x the TTL leaves room for a loaded machine
        assert!(gone < TTL * 2, "{gone:?}");

        // dropping a backend revokes its lease at once
        let owner = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        owner
            .register(reg("dropped", "tcp://127.0.0.1:9005/a#1", &[]), false)
            .await
            .unwrap();
        drop(owner);
        let gone = time_until(TTL, || async { ns.lookup("dropped").await.is_err() })
            .await
            .expect("a dropped backend's name outlived its TTL");
        assert!(gone < TTL, "{gone:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_spread_by_pick_policy() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let uris = [
            "tcp://127.0.0.1:9101/a#1",
            "tcp://127.0.0.1:9102/a#1",
            "tcp://127.0.0.1:9103/a#1",
        ];
        // three servers, each with its own backend (and lease)
        let mut owners = Vec::new();
        for uri in uris {
            let b = EtcdBackend::connect(&etcd.endpoints(), quick_options())
                .await
                .unwrap();
            b.register(reg("pool", uri, &[]), false).await.unwrap();
            owners.push(b);
        }
        // safe mode refuses a fourth
        let e = owners[0]
            .register(reg("pool", "tcp://127.0.0.1:9104/a#1", &[]), true)
            .await
            .unwrap_err();
        assert!(format!("{e}").contains("already registered"), "{e}");

        let rr = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        let mut first = HashMap::new();
        for _ in 0..30 {
            let found = rr.lookup("pool").await.unwrap();
            let mut all: Vec<&str> = found.iter().map(|r| r.uri.as_str()).collect();
            all.sort();
            assert_eq!(all, uris);
            *first.entry(found[0].uri.clone()).or_insert(0) += 1;
        }
        // round robin: exactly even
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first.values().all(|n| *n == 10), "{first:?}");

        let random = EtcdBackend::connect(
            &etcd.endpoints(),
            EtcdOptions {
                pick: Pick::Random,
                ..quick_options()
            },
        )
        .await
        .unwrap();
        let mut first = HashMap::new();
        for _ in 0..300 {
            let found = random.lookup("pool").await.unwrap();
            assert_eq!(found.len(), 3);
            *first.entry(found[0].uri.clone()).or_insert(0) += 1;
        }
        // random: every instance comes first sometimes (each 1/3 of 300; 40 is far below)
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first.values().all(|n| *n >= 40), "{first:?}");

        // one instance goes: lookups return the other two
        owners.remove(1).close().await;
        let found = rr.lookup("pool").await.unwrap();
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|r| r.uri != uris[1]));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_yields_the_instance_list_after_each_change() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let ns = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        let a = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        let b = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        let mut watch = ns.watch("watched").expect("etcd pushes changes");
        assert!(
            next(&mut watch).await.is_empty(),
            "first item: the current (empty) list"
        );
        a.register(reg("watched", "tcp://127.0.0.1:9201/a#1", &[]), false)
            .await
            .unwrap();
        assert_eq!(next(&mut watch).await, ["tcp://127.0.0.1:9201/a#1"]);
        // a name sharing the prefix is not this one
        a.register(reg("watched.too", "tcp://127.0.0.1:9299/a#1", &[]), false)
            .await
            .unwrap();
        b.register(reg("watched", "tcp://127.0.0.1:9202/a#1", &[]), false)
            .await
            .unwrap();
        assert_eq!(
            next(&mut watch).await,
            ["tcp://127.0.0.1:9201/a#1", "tcp://127.0.0.1:9202/a#1"]
        );
        // set_metadata rewrites every instance: one event each
        b.set_metadata("watched", tags(&["new"])).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let list = watch.next().await.unwrap();
                assert_eq!(list.len(), 2);
                if list.iter().all(|r| r.metadata == tags(&["new"])) {
                    break;
                }
            }
        })
        .await
        .expect("the watch did not show the new metadata");
        a.close().await; // revokes a's lease: its instance goes
        assert_eq!(next(&mut watch).await, ["tcp://127.0.0.1:9202/a#1"]);
        let f = Filter {
            prefix: Some("watched".into()),
            ..Filter::default()
        };
        ns.remove(&f, Some("tcp://127.0.0.1:9202/a#1"))
            .await
            .unwrap();
        assert!(next(&mut watch).await.is_empty());
        // a second watch starts with the current state
        let mut second = ns.watch("watched.too").unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), second.next())
            .await
            .unwrap()
            .unwrap();
        assert!(
            first.is_empty(),
            "a's close removed watched.too too: {first:?}"
        );
    })
    .await
    .unwrap();
}

/// Two real wirecall servers (child processes) under one name; one is killed; a caller that
/// follows the etcd watch reaches the other. Reports the failover time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_other_instance_when_one_dies() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut first = spawn_registered_server(&etcd.endpoint(0), "failover.svc").await;
        let second = spawn_registered_server(&etcd.endpoint(0), "failover.svc").await;
        let ns = Arc::new(
            EtcdBackend::connect(&etcd.endpoints(), quick_options())
                .await
                .unwrap(),
        );

        // the caller: a cache of the instances kept fresh by the watch
        let cache = Arc::new(std::sync::Mutex::new(
            ns.lookup("failover.svc").await.unwrap(),
        ));
        assert_eq!(cache.lock().unwrap().len(), 2);
        let mut watch = ns.watch("failover.svc").unwrap();
        let (removed_tx, mut removed_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let dead_uri = first.uri.clone();
        let c = cache.clone();
        let follower = tokio::spawn(async move {
            while let Some(list) = watch.next().await {
                let dead_gone = !list.iter().any(|r| r.uri == dead_uri);
                *c.lock().unwrap() = list;
                if dead_gone {
                    let _ = removed_tx.send(Instant::now());
                }
            }
        });

        // calls go to the first server until it dies
        let to_first = Proxy::new(&first.uri)
            .unwrap()
            .timeout(Duration::from_secs(2));
        let (pid_first, _) = who(&to_first, 1).await.unwrap();
        first.kill();
        let killed = Instant::now();

        // the caller's loop: call the instance it holds; on failure, drop it and take the
        // next one its cache has (the watch removes dead instances)
        let mut failed: BTreeSet<String> = [first.uri.clone()].into();
        let mut current = to_first;
        let mut x = 2;
        let reached = loop {
            assert!(
                killed.elapsed() < TTL * 4,
                "no instance answered within 4x the TTL"
            );
            match who(&current, x).await {
                Ok((pid, echoed)) => {
                    assert_eq!(echoed, x);
                    break (pid, killed.elapsed());
                }
                Err(_) => {
                    failed.insert(current.uri().to_string());
                    let next = cache
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|r| r.uri.clone())
                        .find(|u| !failed.contains(u));
                    match next {
                        Some(uri) => {
                            current = Proxy::new(&uri).unwrap().timeout(Duration::from_secs(2))
                        }
                        None => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
            x += 1;
        };
        assert_ne!(reached.0, pid_first);
        assert_eq!(current.uri(), second.uri);
        let failover = reached.1;
        // the watch drops the dead instance when its lease expires
        let removed = tokio::time::timeout(TTL * 3, removed_rx.recv())
            .await
            .expect("the watch did not drop the dead instance within 3x the TTL")
            .unwrap();
        let invalidated = removed.duration_since(killed);
        eprintln!(
            "figure: failover (kill -> first successful call on the other instance) {failover:?}; \
             the watch dropped the dead instance {invalidated:?} after the kill (TTL {TTL:?})"
        );
        assert!(failover < TTL * 2, "{failover:?}");
        assert!(invalidated < TTL * 2, "{invalidated:?}");
        assert_eq!(cache.lock().unwrap().len(), 1);
        follower.abort();
    })
    .await
    .unwrap();
}

/// A 3-member cluster losing one member keeps answering lookups and registrations, and the
/// leases of live backends stay alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_survives_losing_one() {
    let Some(mut etcd) = Etcd::start(3).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(90), async {
        let ns = EtcdBackend::from_uri(&etcd.uri()).await.unwrap();
        ns.register(reg("clustered", "tcp://127.0.0.1:9301/a#1", &["x"]), false)
            .await
            .unwrap();
        let watcher = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        let mut watch = watcher.watch("clustered").unwrap();
        let initial = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(initial.len(), 1);
        // the leader goes: the harder case (an election, and the watch may sit on it)
        let leader = etcd.leader().await;
        etcd.kill(leader);
        // every lookup after the loss answers (bounded by the request timeout and retries)
        let start = Instant::now();
        for i in 0..50 {
            let found = tokio::time::timeout(Duration::from_secs(10), ns.lookup("clustered"))
                .await
                .unwrap_or_else(|_| panic!("lookup {i} hung"))
                .unwrap_or_else(|e| panic!("lookup {i} after losing a member: {e}"));
            assert_eq!(found[0].uri, "tcp://127.0.0.1:9301/a#1");
        }
        eprintln!(
            "figure: 50 lookups after losing 1 of 3 members took {:?}",
            start.elapsed()
        );
        ns.register(
            reg("clustered.after", "tcp://127.0.0.1:9302/a#1", &[]),
            false,
        )
        .await
        .unwrap();
        // the watch carries on (re-established on a live member if it was on the dead one)
        let changed = tokio::time::timeout(Duration::from_secs(10), async {
            ns.register(reg("clustered", "tcp://127.0.0.1:9303/a#1", &[]), false)
                .await
                .unwrap();
            loop {
                let list = watch.next().await.unwrap();
                if list.len() == 2 {
                    return list;
                }
            }
        })
        .await
        .expect("the watch saw no change after losing a member");
        assert_eq!(changed.len(), 2);
        // leases survive: the names are still there after 2x the TTL
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(ns.lookup("clustered").await.unwrap().len(), 2);
        assert_eq!(watcher.lookup("clustered.after").await.unwrap().len(), 1);
    })
    .await
    .unwrap();
}

/// etcd gone: proxies that resolved a name keep working; new lookups get a clear
/// `unavailable` error naming the endpoints, within a bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_gone_keeps_resolved_proxies_and_fails_lookups_clearly() {
    let Some(mut etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let ns = Arc::new(
            EtcdBackend::connect(&etcd.endpoints(), quick_options())
                .await
                .unwrap(),
        );
        ns.register(reg("soon.gone", "tcp://127.0.0.1:9401/a#1", &[]), false)
            .await
            .unwrap();
        // a live server, and a name: proxy that resolved it while etcd was up
        let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let pid = std::process::id();
        engine
            .register_functions(
                Functions::new("who").sync_fn("echo", &["x"], move |(x,): (u64,)| (pid, x)),
                7,
            )
            .unwrap();
        ns.register(reg("cached.svc", &engine.address(), &[]), false)
            .await
            .unwrap();
        let as_backend = || -> Arc<dyn NamingBackend> { ns.clone() };
        let resolved = Proxy::new("name:cached.svc").unwrap().naming(as_backend());
        assert_eq!(who(&resolved, 1).await.unwrap(), (pid, 1));
        etcd.kill(0);
        // the resolved proxy keeps working without etcd
        for x in 2..20 {
            assert_eq!(who(&resolved, x).await.unwrap(), (pid, x));
        }
        // a new one cannot resolve, and says why
        let fresh = Proxy::new("name:cached.svc").unwrap().naming(as_backend());
        match who(&fresh, 1).await.unwrap_err() {
            Error::Naming {
                unavailable: true,
                message,
                ..
            } => {
                assert!(message.contains(&etcd.endpoint(0)), "{message}")
            }
            other => panic!("expected an unavailable naming error, got {other:?}"),
        }
        let endpoint = etcd.endpoint(0);
        let check = |e: Error| match e {
            Error::Naming {
                message,
                unavailable: true,
                ..
            } => {
                assert!(message.contains(&endpoint), "{message}");
                assert!(message.contains("etcd"), "{message}");
            }
            other => panic!("expected an unavailable naming error, got {other:?}"),
        };
        for _ in 0..2 {
            let start = Instant::now();
            check(ns.lookup("soon.gone").await.unwrap_err());
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{:?}",
                start.elapsed()
            );
            check(ns.ping().await.unwrap_err());
            check(
                ns.register(reg("new", "tcp://127.0.0.1:9402/a#1", &[]), false)
                    .await
                    .unwrap_err(),
            );
        }
        // connecting to nothing fails the same way, and fast
        let start = Instant::now();
        let e = EtcdBackend::connect(std::slice::from_ref(&endpoint), quick_options())
            .await
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(e.is_retryable(), "{e}");
        check(e);
        // a bad URI is not "unavailable"
        let e = EtcdBackend::from_uri("etcd://no-port").await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Naming {
                    unavailable: false,
                    ..
                }
            ),
            "{e}"
        );
    })
    .await
    .unwrap();
}

/// The same failover through a real proxy: `Proxy::new("name:...")` resolving through the
/// etcd backend, its cache kept fresh by the watch and re-resolved when the cached address
/// fails. Reports the time from the kill to the first successful call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_proxy_fails_over_when_its_instance_dies() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(90), async {
        let mut servers = [
            spawn_registered_server(&etcd.endpoint(0), "failover.proxy").await,
            spawn_registered_server(&etcd.endpoint(0), "failover.proxy").await,
        ];
        let ns: Arc<dyn NamingBackend> =
            Arc::new(EtcdBackend::connect(&etcd.endpoints(), quick_options()).await.unwrap());
        let proxy = Proxy::new("name:failover.proxy")
            .unwrap()
            .naming(ns)
            .timeout(Duration::from_secs(2));
        let (pid, _) = who(&proxy, 1).await.unwrap();
        let resolved = proxy.resolve().await.unwrap();
        let victim = servers.iter().position(|s| s.pid == pid).expect("a child answered");
        assert_eq!(servers[victim].uri, resolved);
        servers[victim].kill();
        let killed = Instant::now();
        let mut failures = 0;
        let (other, failover) = loop {
            assert!(killed.elapsed() < TTL * 4, "the proxy reached no instance within 4x the TTL");
            match who(&proxy, 2).await {
                Ok((p, _)) => break (p, killed.elapsed()),
                Err(_) => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        assert_ne!(other, pid);
        assert_eq!(other, servers[1 - victim].pid);
        assert_eq!(proxy.resolve().await.unwrap(), servers[1 - victim].uri);
        eprintln!(
            "figure: a name: proxy failed over {failover:?} after the kill ({failures} failed calls; TTL {TTL:?})"
        );
        assert!(failover < TTL * 2, "{failover:?}");
        // later calls stay on the live instance
        for x in 0..20 {
            assert_eq!(who(&proxy, x).await.unwrap(), (other, x));
        }
    })
    .await
    .unwrap();
}

/// Name servers are stateless in front of etcd: two of them (as `wirecall ns serve --store
/// etcd://...` runs one) answer the same names, whichever one registered them, and a
/// `name:` proxy resolves through either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_servers_in_front_of_etcd_answer_the_same_names() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut servers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
            let store: Arc<dyn NamingBackend> =
                wirecall::naming::backend_from_uri(&etcd.uri()).unwrap();
            engine.host_name_server(store).await.unwrap();
            clients.push(RemoteNaming::new(&engine.address()).unwrap());
            servers.push(engine);
        }
        let app = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        let pid = std::process::id();
        app.register_functions(
            Functions::new("who").sync_fn("echo", &["x"], move |(x,): (u64,)| (pid, x)),
            7,
        )
        .unwrap();
        clients[0]
            .register(reg("shared.svc", &app.address(), &["team.a"]), true)
            .await
            .unwrap();
        // the other name server sees it, with its metadata, and refuses a safe overwrite
        let found = clients[1].lookup("shared.svc").await.unwrap();
        assert_eq!(found, vec![reg("shared.svc", &app.address(), &["team.a"])]);
        let e = clients[1]
            .register(reg("shared.svc", "tcp://127.0.0.1:1", &[]), true)
            .await
            .unwrap_err();
        assert!(format!("{e}").contains("already registered"), "{e}");
        // and etcd holds it: a direct backend sees it too
        let direct = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        assert_eq!(direct.lookup("shared.svc").await.unwrap().len(), 1);
        // a proxy resolving through the second name server calls the app
        let backend: Arc<dyn NamingBackend> =
            Arc::new(RemoteNaming::new(&servers[1].address()).unwrap());
        let proxy = Proxy::new("name:shared.svc").unwrap().naming(backend);
        assert_eq!(who(&proxy, 5).await.unwrap(), (pid, 5));
        let f = Filter {
            prefix: Some("shared.".into()),
            ..Filter::default()
        };
        assert_eq!(clients[1].remove(&f, None).await.unwrap(), 1);
        let e = clients[0].lookup("shared.svc").await.unwrap_err();
        assert!(is_not_registered(&e), "{e}");
    })
    .await
    .unwrap();
}

/// The name server example (Pyro's name server chapter: register with metadata, look up by
/// name and by metadata, deregister on finalize) with etcd as its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_server_example_over_etcd() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    let seen = tokio::time::timeout(
        Duration::from_secs(60),
        name_server_example::run(&etcd.uri()),
    )
    .await
    .expect("the example timed out")
    .unwrap_or_else(|e| panic!("the example failed over etcd: {e}"));
    assert_eq!(seen.by_name, "Hello, Ada!");
    assert_eq!(seen.by_metadata, "Bonjour, Ada !");
    assert_eq!(seen.greeters, ["example.greeting", "example.greeting.fr"]);
    assert_eq!(seen.left, ["Pyro.NameServer"]);
    // the names were in etcd: the greeters removed theirs, the name server's own is there
    let direct = EtcdBackend::connect(&etcd.endpoints(), quick_options())
        .await
        .unwrap();
    let left: Vec<String> = direct
        .list(&Filter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(left.iter().all(|n| n == "Pyro.NameServer"), "{left:?}");
}

/// Python Pyro5 clients are served alike by a name server whose store is etcd:
/// `Pyro5.api.locate_ns` finds it and the whole name server API (register, safe mode,
/// lookup, list, yplookup, set_metadata, remove, count) behaves as over the embedded store
/// (`tests/python/naming_client.py`, the scenario `tests/naming_pyro5.rs` runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_clients_use_a_name_server_on_etcd() {
    let Some(python) = pyro_common::python_or_skip("python_clients_use_a_name_server_on_etcd")
    else {
        return;
    };
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    for serializer in ["serpent", "json"] {
        // a prefix of its own per run: the name server's own entry starts the count at 1
        let store = format!("{}/py-{serializer}/", etcd.uri());
        let ns = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
        ns.host_name_server(wirecall::naming::backend_from_uri(&store).unwrap())
            .await
            .unwrap();
        let port: u16 = ns.address().rsplit(':').next().unwrap().parse().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/naming_client.py");
        let mut child = Command::new(&python)
            .args([script, &port.to_string(), "ns", serializer])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python");
        let out = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the Python client ran past 60 s and was killed");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{serializer}: the Python client failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("ok count at the end"),
            "{serializer}: {stdout}"
        );
        assert_eq!(
            stdout.lines().count(),
            26,
            "{serializer}: every check ran:\n{stdout}"
        );
        ns.finalize().await;
    }
}

/// A backend whose lease is lost (here revoked behind its back, as when etcd was
/// unreachable for longer than the TTL) takes a new lease and writes its registrations again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_replaced_and_the_names_written_again() {
    let Some(etcd) = Etcd::start(1).await else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let owner = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        owner
            .register(reg("resilient", "tcp://127.0.0.1:9501/a#1", &["x"]), false)
            .await
            .unwrap();
        let mut admin =
            etcd_client::Client::connect([format!("http://{}", etcd.endpoint(0))], None)
                .await
                .unwrap();
        let leases: Vec<i64> = admin
            .leases()
            .await
            .unwrap()
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        assert_eq!(leases.len(), 1, "{leases:?}");
        admin.lease_revoke(leases[0]).await.unwrap();
        let observer = EtcdBackend::connect(&etcd.endpoints(), quick_options())
            .await
            .unwrap();
        // (the name went with the revoked lease; the keeper notices at its next keepalive)
        let back = time_until(TTL * 2, || async {
            observer.lookup("resilient").await.is_ok()
        })
        .await
        .expect("the registration did not come back within 2x the TTL");
        eprintln!("figure: a revoked lease's registration was written again after {back:?}");
        let found = observer.lookup("resilient").await.unwrap();
        assert_eq!(
            found,
            vec![reg("resilient", "tcp://127.0.0.1:9501/a#1", &["x"])]
        );
        // on a new lease that is kept alive
        let now: Vec<i64> = admin
            .leases()
            .await
            .unwrap()
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        assert_eq!(now.len(), 1);
        assert_ne!(now[0], leases[0]);
        tokio::time::sleep(TTL * 2).await;
        assert!(observer.lookup("resilient").await.is_ok());
    })
    .await
    .unwrap();
}
