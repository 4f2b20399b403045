//! The `kubeskippy plugin` subcommands' arguments and what each prints.

use std::path::PathBuf;

use clap::Subcommand;

use super::{ToolkitError, bench, check, fixtures, list, read_wasm, scaffold};
use crate::host::{PluginError, PluginHost};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Kind, world and WIT version, imports, size, whether it fits a ConfigMap,
    /// and a fixture run: every check the daemon makes before a plugin serves.
    Check { file: PathBuf },
    /// Run the plugin against fixture cases and compare with their expected outputs.
    Test {
        file: PathBuf,
        /// A directory of NAME.yaml cases (see examples/plugins/*/fixtures).
        #[arg(long)]
        fixtures: PathBuf,
        /// Write what the plugin returns as each case's `expect` instead of comparing.
        #[arg(long)]
        update: bool,
    },
    /// Compile time, cached load time, per-call latency p50/p99 and peak memory.
    Bench {
        file: PathBuf,
        /// Calls to time.
        #[arg(long, default_value_t = 200)]
        calls: usize,
    },
    /// Print the ConfigMap(s) that ship the plugin, gzipped, chunked and pinned
    /// by sha256; apply them with `kubectl apply --server-side -f -`.
    Configmap {
        file: PathBuf,
        /// The name policies refer to the plugin by.
        #[arg(long)]
        name: String,
        #[arg(short, long)]
        namespace: Option<String>,
        /// A version label shown by `plugin list`.
        #[arg(long)]
        plugin_version: Option<String>,
    },
    /// Scaffold a plugin project against this host's WIT; it builds and passes
    /// `plugin test` as generated.
    New {
        name: String,
        #[arg(long, value_enum)]
        lang: scaffold::Lang,
        #[arg(long, value_enum)]
        kind: scaffold::Kind,
        /// Where the project goes; default: ./NAME.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// What a running daemon serves: name, kind, version, digest, source,
    /// loaded since, last rejection.
    List {
        /// The daemon's probe address (in a cluster: `kubectl port-forward`).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        daemon: String,
        #[arg(long)]
        json: bool,
    },
}

fn host() -> Result<PluginHost, ToolkitError> {
    PluginHost::new().map_err(|error: PluginError| ToolkitError::Plugin(error.to_string()))
}

fn display_name(file: &std::path::Path) -> String {
    file.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string())
}

pub fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Check { file } => {
            let bytes = read_wasm(&file)?;
            let name = display_name(&file);
            let checked = check::check(&host()?, &name, &bytes)?;
            print!("{}", check::render(&name, &checked));
        }
        PluginCommand::Test {
            file,
            fixtures: dir,
            update,
        } => {
            let bytes = read_wasm(&file)?;
            let name = display_name(&file);
            let outcomes = fixtures::run(&host()?, &name, &bytes, &dir, update)?;
            let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
            for outcome in &outcomes {
                match &outcome.failure {
                    None if update => println!("updated {}", outcome.case),
                    None => println!("ok      {}", outcome.case),
                    Some(failure) => println!("FAILED  {}\n{failure}", outcome.case),
                }
            }
            println!("{} passed, {failed} failed", outcomes.len() - failed);
            if failed > 0 {
                anyhow::bail!("{failed} of {} fixture cases failed", outcomes.len());
            }
        }
        PluginCommand::Bench { file, calls } => {
            let bytes = read_wasm(&file)?;
            let name = display_name(&file);
            let figures = bench::run(&name, &bytes, calls)?;
            print!("{}", bench::render(&name, &figures));
        }
        PluginCommand::Configmap {
            file,
            name,
            namespace,
            plugin_version,
        } => {
            let bytes = read_wasm(&file)?;
            print!(
                "{}",
                check::configmaps_yaml(
                    &host()?,
                    &name,
                    namespace.as_deref(),
                    plugin_version.as_deref(),
                    &bytes
                )?
            );
        }
        PluginCommand::New {
            name,
            lang,
            kind,
            dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let written = scaffold::write(&dir, &name, lang, kind)?;
            println!(
                "{} files written to {}; build with scripts/build-plugin {} {} OUT.wasm",
                written,
                dir.display(),
                lang.as_str(),
                dir.display()
            );
        }
        PluginCommand::List { daemon, json } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let plugins = runtime.block_on(list::fetch(&daemon))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plugins)?);
            } else {
                print!("{}", list::render(&plugins));
            }
        }
    }
    Ok(())
}
