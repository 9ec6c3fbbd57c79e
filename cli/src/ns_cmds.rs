//! `wirecall ns`: run a name server (`ns serve`) and administer one (`ns list`, `lookup`,
//! `register`, `remove`, `meta`, `ping`), as Pyro5's `pyro5-ns` and `pyro5-nsc` do.
//!
//! The administration commands talk to the name server at `--ns` (default: `WIRECALL_NS`),
//! or work on a store file directly when `--ns` names one.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use wirecall::naming::{self, Filter, NamingBackend, Registration};
use wirecall::{Engine, Error};

/// Arguments of `wirecall ns`.
#[derive(Args, Debug)]
pub(crate) struct NsArgs {
    #[command(subcommand)]
    command: NsCommand,
}

/// The name server to talk to.
#[derive(Args, Debug)]
struct NsTarget {
    /// The name server's address (`tcp://127.0.0.1:9090`), or a store file to work on
    /// directly. Default: WIRECALL_NS.
    #[arg(long = "ns", value_name = "ADDR", env = "WIRECALL_NS")]
    ns: Option<String>,
}

#[derive(Subcommand, Debug)]
enum NsCommand {
    /// Run a name server (Pyro5-compatible: Python finds it with
    /// `Pyro5.api.locate_ns(host, port)`); prints its address on the first line of stdout.
    Serve {
        /// Address to listen on.
        #[arg(long, value_name = "URL", default_value = "tcp://127.0.0.1:9090")]
        listen: String,
        /// Where registrations live: a store file (kept across restarts), `mem`, or an etcd
        /// cluster `etcd://host:port[,host:port...]` (CLI built with the `etcd` feature).
        #[arg(long, value_name = "FILE", default_value = "mem")]
        store: String,
        /// Log filter, as RUST_LOG (`info` by default).
        #[arg(long = "log", value_name = "FILTER")]
        log: Option<String>,
    },
    /// List registrations (all, by prefix, regex or metadata tags).
    List {
        #[command(flatten)]
        target: NsTarget,
        /// Only names starting with this prefix.
        prefix: Option<String>,
        /// Only names matching this regular expression (whole name).
        #[arg(long, value_name = "REGEX")]
        regex: Option<String>,
        /// Only registrations carrying every one of these tags (comma-separated).
        #[arg(long, value_name = "TAGS", value_delimiter = ',')]
        meta_all: Vec<String>,
        /// Only registrations carrying at least one of these tags (comma-separated).
        #[arg(long, value_name = "TAGS", value_delimiter = ',')]
        meta_any: Vec<String>,
    },
    /// Print the URI (and metadata) registered under a name.
    Lookup {
        #[command(flatten)]
        target: NsTarget,
        /// The name.
        name: String,
    },
    /// Register a name for a URI.
    Register {
        #[command(flatten)]
        target: NsTarget,
        /// The name.
        name: String,
        /// The URI (`greeting:1@tcp://127.0.0.1:4000`, `PYRO:obj@127.0.0.1:4000`).
        uri: String,
        /// Metadata tags (comma-separated or repeated).
        #[arg(long = "meta", value_name = "TAGS", value_delimiter = ',')]
        meta: Vec<String>,
        /// Refuse to overwrite an existing registration.
        #[arg(long)]
        safe: bool,
    },
    /// Remove a name, or every name by prefix or regex; prints how many were removed.
    Remove {
        #[command(flatten)]
        target: NsTarget,
        /// The name.
        #[arg(required_unless_present_any = ["prefix", "regex"], conflicts_with_all = ["prefix", "regex"])]
        name: Option<String>,
        /// Every name starting with this prefix.
        #[arg(long, value_name = "PREFIX", conflicts_with = "regex")]
        prefix: Option<String>,
        /// Every name matching this regular expression.
        #[arg(long, value_name = "REGEX")]
        regex: Option<String>,
    },
    /// Replace the metadata tags of a name (none: clear them).
    Meta {
        #[command(flatten)]
        target: NsTarget,
        /// The name.
        name: String,
        /// The new tags.
        tags: Vec<String>,
    },
    /// Check that the name server answers; prints its registration count.
    Ping {
        #[command(flatten)]
        target: NsTarget,
    },
}

/// A naming error as the CLI reports it.
fn describe(e: &Error) -> String {
    match e {
        Error::Naming { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn backend(target: &NsTarget) -> Result<Arc<dyn NamingBackend>, String> {
    let Some(ns) = target.ns.as_deref().filter(|s| !s.trim().is_empty()) else {
        return Err(
            "no name server: give --ns ADDR (e.g. tcp://127.0.0.1:9090) or set WIRECALL_NS"
                .to_string(),
        );
    };
    naming::backend_from_uri(ns).map_err(|e| describe(&e))
}

fn print_registration(r: &Registration) {
    println!("{} --> {}", r.name, r.uri);
    if !r.metadata.is_empty() {
        println!(
            "    metadata: {}",
            r.metadata.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

/// Runs `wirecall ns ...`.
pub(crate) fn run(args: &NsArgs) -> Result<ExitCode, String> {
    if let NsCommand::Serve { listen, store, log } = &args.command {
        return serve(listen, store, log.as_deref());
    }
    let rt = runtime()?;
    rt.block_on(async {
        let limit = std::time::Duration::from_secs(30);
        let work = admin(&args.command);
        match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err("the name server did not answer within 30 s".to_string()),
        }
    })
}

async fn admin(command: &NsCommand) -> Result<ExitCode, String> {
    let err = |e: Error| describe(&e);
    match command {
        NsCommand::Serve { .. } => unreachable!("handled by run"),
        NsCommand::List {
            target,
            prefix,
            regex,
            meta_all,
            meta_any,
        } => {
            let filter = Filter {
                prefix: prefix.clone(),
                regex: regex.clone(),
                meta_all: meta_all.iter().cloned().collect(),
                meta_any: meta_any.iter().cloned().collect(),
            };
            for r in backend(target)?.list(&filter).await.map_err(err)? {
                print_registration(&r);
            }
        }
        NsCommand::Lookup { target, name } => {
            for r in backend(target)?.lookup(name).await.map_err(err)? {
                print_registration(&r);
            }
        }
        NsCommand::Register {
            target,
            name,
            uri,
            meta,
            safe,
        } => {
            let reg = Registration::new(name.clone(), uri.clone()).with_metadata(meta.clone());
            backend(target)?.register(reg, *safe).await.map_err(err)?;
            println!("registered {name} --> {uri}");
        }
        NsCommand::Remove {
            target,
            name,
            prefix,
            regex,
        } => {
            let filter = match (name, prefix, regex) {
                (Some(n), _, _) => Filter::exact(n),
                (None, Some(p), _) => Filter::prefix(p.clone()),
                (None, None, Some(r)) => Filter::regex(r.clone()),
                (None, None, None) => return Err("give a name, --prefix or --regex".into()),
            };
            let n = backend(target)?.remove(&filter, None).await.map_err(err)?;
            println!("removed {n}");
        }
        NsCommand::Meta { target, name, tags } => {
            backend(target)?
                .set_metadata(name, tags.iter().cloned().collect())
                .await
                .map_err(err)?;
            println!("metadata of {name}: {}", tags.join(", "));
        }
        NsCommand::Ping { target } => {
            let b = backend(target)?;
            b.ping().await.map_err(err)?;
            println!(
                "name server ok: {} registrations",
                b.count().await.map_err(err)?
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(listen: &str, store: &str, log: Option<&str>) -> Result<ExitCode, String> {
    crate::serve_cmds::init_logging(log, crate::serve_cmds::LogFormat::Text)?;
    let rt = runtime()?;
    rt.block_on(async {
        let backend = naming::backend_from_uri(store).map_err(|e| describe(&e))?;
        let engine = Engine::server(listen)
            .start()
            .await
            .map_err(|e| e.to_string())?;
        engine
            .host_name_server(backend)
            .await
            .map_err(|e| describe(&e))?;
        // First line of stdout: the address, for scripts and tests.
        println!("{}", engine.address());
        let hp = engine
            .address()
            .trim_start_matches("tcp://")
            .rsplit_once(':')
            .map(|(h, p)| format!("\"{h}\", {p}"))
            .unwrap_or_default();
        eprintln!(
            "name server on {} (store: {store}); wirecall clients: WIRECALL_NS={}; Python: Pyro5.api.locate_ns({hp}); Ctrl-C to stop",
            engine.address(),
            engine.address()
        );
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    eprintln!("wirecall ns serve: cannot wait for Ctrl-C ({e}); stopping");
                }
            }
            () = terminated() => {}
        }
        engine.finalize().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves when the process is asked to terminate (SIGTERM).
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut s) = signal(SignalKind::terminate()) {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}
