//! Figures of the etcd naming backend (issue 13): lookups/s, the resolution cost added to a
//! `name:` proxy's first call (and to later calls), and failover time when one of two
//! registered servers is killed.
//!
//! Starts its own single-node etcd on free loopback ports in a temp dir (the `etcd` binary
//! must be on PATH: `scripts/system-deps.sh`), and its servers as child processes of itself.
//!
//! ```sh
//! cargo run --release -p wirecall --features etcd --example naming_etcd_bench
//! ```

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wirecall::naming::etcd::{EtcdBackend, EtcdOptions};
use wirecall::naming::{NamingBackend, Registration, RemoteNaming};
use wirecall::{Engine, Error, Functions, Proxy};

const TTL: Duration = Duration::from_secs(2);

fn options() -> EtcdOptions {
    EtcdOptions {
        ttl: TTL,
        ..EtcdOptions::default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A single-node etcd, killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_etcd() -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "bench"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--logger", "zap", "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting etcd (install it with scripts/system-deps.sh)");
    let etcd = Etcd {
        child,
        endpoint: format!("127.0.0.1:{client}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while EtcdBackend::connect(std::slice::from_ref(&etcd.endpoint), options())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "etcd did not start within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    etcd
}

async fn echo_server() -> Engine {
    let engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
    let pid = std::process::id();
    engine
        .register_functions(
            Functions::new("who").sync_fn("echo", &["x"], move |(x,): (u64,)| (pid, x)),
            7,
        )
        .unwrap();
    engine
}

async fn who(proxy: &Proxy, x: u64) -> Result<(u32, u64), Error> {
    Engine::client()
        .register("who_echo")
        .on(proxy, 7)
        .arg(x)
        .call()
        .await
}

/// The child mode: a server registered under a name, until killed.
async fn child(endpoint: &str, name: &str) {
    let engine = echo_server().await;
    let ns = EtcdBackend::connect(&[endpoint.to_string()], options())
        .await
        .unwrap();
    ns.register(Registration::new(name, engine.address()), false)
        .await
        .unwrap();
    println!("READY {}", std::process::id());
    tokio::time::sleep(Duration::from_secs(300)).await;
}

struct ServerChild(Child, u32);

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(endpoint: &str, name: &str) -> ServerChild {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["child", endpoint, name])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = c.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let pid = line
        .trim()
        .strip_prefix("READY ")
        .expect("child did not start")
        .parse()
        .unwrap();
    ServerChild(c, pid)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(&args[2], &args[3]).await;
        return;
    }
    let etcd = start_etcd().await;
    let endpoints = [etcd.endpoint.clone()];
    println!("etcd {} (single member, loopback)", etcd.endpoint);

    // lookups/s
    let ns = Arc::new(EtcdBackend::connect(&endpoints, options()).await.unwrap());
    for i in 0..4 {
        ns.register(
            Registration::new("bench.pool", format!("tcp://127.0.0.1:{}", 9000 + i)),
            false,
        )
        .await
        .unwrap();
    }
    for _ in 0..200 {
        ns.lookup("bench.pool").await.unwrap();
    }
    let n = 5000;
    let start = Instant::now();
    for _ in 0..n {
        ns.lookup("bench.pool").await.unwrap();
    }
    let one = n as f64 / start.elapsed().as_secs_f64();
    println!("lookups/s, 1 caller, one backend: {one:.0}");
    for tasks in [16usize, 64] {
        let per = 1000;
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let ns = ns.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..per {
                    ns.lookup("bench.pool").await.unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let rate = (tasks * per) as f64 / start.elapsed().as_secs_f64();
        println!("lookups/s, {tasks} concurrent callers, one backend: {rate:.0}");
    }

    // the same lookups through a name server in front of etcd (what `wirecall ns serve
    // --store etcd://...` runs), over loopback tcp
    let ns_engine = Engine::server("tcp://127.0.0.1:0").start().await.unwrap();
    let store: Arc<dyn NamingBackend> =
        Arc::new(EtcdBackend::connect(&endpoints, options()).await.unwrap());
    ns_engine.host_name_server(store).await.unwrap();
    let remote = Arc::new(RemoteNaming::new(&ns_engine.address()).unwrap());
    for _ in 0..200 {
        remote.lookup("bench.pool").await.unwrap();
    }
    let start = Instant::now();
    for _ in 0..n {
        remote.lookup("bench.pool").await.unwrap();
    }
    let one = n as f64 / start.elapsed().as_secs_f64();
    println!("lookups/s through a name server on etcd, 1 caller: {one:.0}");
    for tasks in [16usize, 64] {
        let per = 1000;
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let remote = remote.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..per {
                    remote.lookup("bench.pool").await.unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let rate = (tasks * per) as f64 / start.elapsed().as_secs_f64();
        println!("lookups/s through a name server on etcd, {tasks} concurrent callers (one connection): {rate:.0}");
    }

    // resolution cost of a proxy's first call, and of later calls
    let engine = echo_server().await;
    let addr = engine.address();
    ns.register(Registration::new("bench.echo", addr.clone()), false)
        .await
        .unwrap();
    let backend: Arc<dyn NamingBackend> = ns.clone();
    let rounds = 200;
    let (mut direct_first, mut named_first) = (Vec::new(), Vec::new());
    let (mut direct_later, mut named_later) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let direct = Proxy::new(&addr).unwrap();
        let named = Proxy::new("name:bench.echo")
            .unwrap()
            .naming(backend.clone());
        let (a, b) = if i % 2 == 0 {
            (&direct, &named)
        } else {
            (&named, &direct)
        };
        for p in [a, b] {
            let t = Instant::now();
            who(p, 1).await.unwrap();
            let e = t.elapsed();
            if std::ptr::eq(p, &direct) {
                direct_first.push(e)
            } else {
                named_first.push(e)
            }
        }
        for _ in 0..5 {
            let t = Instant::now();
            who(&direct, 2).await.unwrap();
            direct_later.push(t.elapsed());
            let t = Instant::now();
            who(&named, 2).await.unwrap();
            named_later.push(t.elapsed());
        }
    }
    let (df, nf) = (median(direct_first), median(named_first));
    println!(
        "first call (median of {rounds}): direct {df:?}, name: through etcd {nf:?} (resolution adds {:?})",
        nf.saturating_sub(df)
    );
    println!(
        "later calls (median): direct {:?}, name: {:?}",
        median(direct_later),
        median(named_later)
    );

    // failover: two servers under one name, kill the one a name: proxy uses
    let mut failovers = Vec::new();
    for round in 0..5 {
        let name = format!("bench.failover.{round}");
        let mut children = vec![
            spawn_child(&etcd.endpoint, &name),
            spawn_child(&etcd.endpoint, &name),
        ];
        let proxy = Proxy::new(&format!("name:{name}"))
            .unwrap()
            .naming(backend.clone())
            .timeout(Duration::from_secs(2));
        let (pid, _) = who(&proxy, 1).await.unwrap();
        let victim = children.iter().position(|c| c.1 == pid).unwrap();
        drop(children.remove(victim));
        let killed = Instant::now();
        let mut failed = 0;
        loop {
            match who(&proxy, 2).await {
                Ok((p, _)) => {
                    assert_ne!(p, pid);
                    break;
                }
                Err(_) => {
                    failed += 1;
                    assert!(killed.elapsed() < TTL * 4, "no failover within 4x the TTL");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        let t = killed.elapsed();
        // and until the dead instance's registration is gone (its lease expired)
        while ns.lookup(&name).await.unwrap().len() > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone = killed.elapsed();
        println!(
            "failover round {round}: first successful call on the other instance {t:?} after the kill ({failed} failed calls); dead registration gone after {gone:?} (TTL {TTL:?})"
        );
        failovers.push(t);
    }
    println!(
        "failover median {:?}, max {:?} (TTL {TTL:?})",
        median(failovers.clone()),
        failovers.iter().max().unwrap()
    );
    ns.close().await;
}
